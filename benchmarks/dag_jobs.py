"""Every job of a workflow's DAG as text — rule, wildcards, input, output, params, threads,
resources — sorted, with the checkout and the working folder written as REPO and WORK, so
that two checkouts' DAGs can be compared with ``diff`` (a refactor must leave them equal).

    PYTHONPATH=<checkout> .venv/bin/python benchmarks/dag_jobs.py <checkout> <workdir> \\
        <checkout>/config/her2st.yaml \\
        "dataset: {name: her2st, source: her2st, mirror: ../shared/data/her2st}" > jobs.txt

Nothing is run: the DAG is built as for a dry run (``snakemake -n``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from snakemake.api import SnakemakeApi
from snakemake.settings.types import (
    ConfigSettings,
    DAGSettings,
    OutputSettings,
    ResourceSettings,
)


def job_lines(repo: Path, workdir: Path, configfile: Path, config: dict) -> list[str]:
    """One text block per job of the DAG, sorted."""
    def clean(value: object) -> str:
        return str(value).replace(str(repo), "REPO").replace(str(workdir), "WORK")

    def resources(job: object) -> list[tuple[str, str]]:
        return sorted((k, clean(v)) for k, v in job.resources.items() if k != "tmpdir")

    workdir.mkdir(parents=True, exist_ok=True)
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=2),
            config_settings=ConfigSettings(configfiles=[configfile], config=config),
            snakefile=repo / "Snakefile", workdir=workdir)
        workflow_api.dag(DAGSettings())
        workflow = workflow_api._workflow  # the built DAG is not public API
        workflow._prepare_dag(forceall=False, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        return sorted("\n".join([
            f"rule {job.rule.name}",
            f"  wildcards {sorted((k, clean(v)) for k, v in job.wildcards.items())}",
            f"  input {sorted(clean(f) for f in job.input)}",
            f"  output {sorted(clean(f) for f in job.output)}",
            f"  params {sorted((k, clean(v)) for k, v in job.params.items())}",
            f"  threads {job.threads}",
            f"  resources {resources(job)}",
        ]) for job in workflow.dag.jobs)


if __name__ == "__main__":
    repo, workdir, configfile = (Path(a).resolve() for a in sys.argv[1:4])
    extra = yaml.safe_load(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else {}
    lines = job_lines(repo, workdir, configfile, extra)
    print("\n".join(lines))
    print(f"{len(lines)} jobs")
