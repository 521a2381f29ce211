"""Rule coverage: stflow.evaluation.coverage.write_coverage (not named coverage.py, which
would shadow the coverage package numba imports)."""

from _job import stage

with stage(snakemake):
    from stflow.evaluation.coverage import write_coverage

    write_coverage(list(snakemake.input.predictions), snakemake.input.splits,
                   snakemake.params.out_dir, snakemake.output.figure)
