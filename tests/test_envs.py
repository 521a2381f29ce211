"""Conda environments and profiles stay in step with pyproject.toml and with Snakemake."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SPLIT = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$")


def _pins(requirements: list[str]) -> dict[str, str]:
    """name (normalised) -> specifier, e.g. {'torch': '==2.14.1'}."""
    pins = {}
    for line in requirements:
        match = SPLIT.match(line.strip())
        if match:
            name = re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")
            pins[name] = match.group(2).replace(" ", "")
    return pins


def _env_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for path in sorted((REPO / "envs").glob("*.yaml")):
        for dep in yaml.safe_load(path.read_text())["dependencies"]:
            if isinstance(dep, dict):
                pins.update(_pins([d for d in dep.get("pip", []) if not d.startswith("-")]))
    return pins


def test_every_pyproject_pin_is_in_an_env_file_with_the_same_specifier():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"])
    found = _env_pins()
    mismatched = {name: (spec, found.get(name)) for name, spec in wanted.items()
                  if found.get(name) != spec}
    assert not mismatched, f"envs/*.yaml differ from pyproject (want, have): {mismatched}"
    assert wanted["torch"] == "==2.14.1" and found["torchvision"] == "==0.29.1"


def test_every_rule_uses_an_existing_conda_env():
    rules = sorted((REPO / "rules").glob("*.smk"))
    assert {p.stem for p in rules} >= {"common", "download", "ingest", "splits", "genes",
                                        "patches", "embed", "graph", "train", "evaluate",
                                        "figures"}
    common = (REPO / "rules" / "common.smk").read_text()
    env = re.search(r'ENV = "(.+)"', common).group(1)
    assert (REPO / "rules" / env).resolve() == REPO / "envs" / "stflow.yaml"
    for path in rules:
        text = path.read_text()
        n_rules = len(re.findall(r"^(?:rule|checkpoint) \w+:", text, re.M))
        for keyword in ("conda:", "log:", "benchmark:", "resources:"):
            assert text.count(f"    {keyword}") == n_rules, f"{path.name}: {keyword} missing"


@pytest.mark.workflow  # spawns Snakemake (for its --help)
def test_profiles_use_only_real_snakemake_options():
    help_text = subprocess.run([sys.executable, "-m", "snakemake", "--help"],
                               capture_output=True, text=True, check=True).stdout
    for name in ("local", "slurm"):
        profile = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
        unknown = [key for key in profile if f"--{key}" not in help_text]
        assert not unknown, f"profiles/{name}: unknown options {unknown}"
    slurm = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert {"mem_mb", "runtime"} <= set(slurm["default-resources"])
    # partitions come from the config's slurm: section, never from one test cluster's names
    assert "slurm_partition" not in slurm["default-resources"]
    assert "slurm_partition" not in str(slurm.get("set-resources", ""))


def test_the_rule_env_installs_nothing_from_a_path_and_rules_run_the_repository_scripts():
    """Every rule runs the library through its workflow/scripts/<rule>.py, which takes it from
    this repository (workflow/scripts/_job.py; tests/test_job_env.py runs a job that way),
    never `python -m stflow` (which needs the package on sys.path) nor the console script
    (which needs it installed)."""
    env = yaml.safe_load((REPO / "envs" / "stflow.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not [d for d in pip if d.startswith("-") or "/" in d or d.startswith(".")]
    assert (REPO / "workflow" / "scripts" / "_job.py").is_file()
    n_scripts = 0
    for path in (REPO / "rules").glob("*.smk"):
        text = path.read_text()
        assert "shell:" not in text and "run:" not in text, path
        for block in re.split(r"^(?=rule |checkpoint )", text, flags=re.M)[1:]:
            name = re.match(r"(?:rule|checkpoint) (\w+):", block).group(1)
            n_scripts += 1
            assert f'    script:\n        "../workflow/scripts/{name}.py"' in block, (path, name)
            script = (REPO / "workflow" / "scripts" / f"{name}.py").read_text()
            assert "with stage(snakemake):" in script, name
            assert "-m stflow" not in script and "subprocess" not in script, name
    assert n_scripts >= 14


def test_the_device_is_no_rerun_trigger():
    """Switching cpu <-> cuda reaches the jobs as $STFLOW_DEVICE, never through params."""
    for path in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule |checkpoint )", path.read_text(), flags=re.M)[1:]:
            assert 'config["device"]' not in block
            match = re.match(r"rule (embed|train|predict|train_final|predict_slide):", block)
            if match:
                script = (REPO / "workflow" / "scripts" / f"{match.group(1)}.py").read_text()
                assert "device()" in script, match.group(1)
    assert 'os.environ["STFLOW_DEVICE"]' in (REPO / "workflow" / "scripts" / "_job.py").read_text()


def test_only_embedding_training_and_prediction_rules_may_ask_for_a_gpu():
    asking = []
    for path in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule |checkpoint )", path.read_text(), flags=re.M)[1:]:
            name = re.match(r"(?:rule|checkpoint) (\w+):", block).group(1)
            if "GPU" in block or "gpu" in block:
                asking.append(name)
    assert sorted(asking) == ["embed", "predict", "predict_slide", "train", "train_final"]


def test_the_scheduler_env_is_documented_and_has_the_slurm_plugin_the_profile_needs():
    """envs/snakemake.yaml is what the README tells cluster users to create; profiles/slurm
    uses slurm-status-command, which the plugin has from 2.8 on."""
    assert "envs/snakemake.yaml" in (REPO / "README.md").read_text()
    env = yaml.safe_load((REPO / "envs" / "snakemake.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    plugin = _pins(pip)["snakemake-executor-plugin-slurm"]
    low = re.search(r">=(\d+)\.(\d+)", plugin)
    assert low and (int(low.group(1)), int(low.group(2))) >= (2, 8), plugin
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert "slurm-status-command" in profile
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert _pins(project["dependencies"])["snakemake-executor-plugin-slurm"] == plugin
