"""Rule interval_coverage: stflow.evaluation.coverage.write_coverage (a script named
coverage.py would shadow the coverage package that numba imports)."""

from _job import stage

with stage(snakemake):
    from stflow.evaluation.coverage import write_coverage

    write_coverage(list(snakemake.input.predictions), splits=snakemake.input.splits,
                   tables_dir=snakemake.params.out_dir, figure=snakemake.output.figure)
