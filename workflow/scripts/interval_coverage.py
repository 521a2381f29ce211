"""Rule interval_coverage: stflow.evaluation.coverage.write_coverage (a script named
coverage.py would shadow the coverage package that numba imports)."""

from _job import stage

with stage(snakemake):
    from stflow.evaluation.coverage import write_coverage
    from stflow.evaluation.fold_scores import prediction_files

    files = [path for folder in snakemake.input.predictions for path in prediction_files(folder)]
    write_coverage(files, splits=snakemake.input.splits, table=snakemake.output.tsv,
                   markdown=snakemake.output.markdown, risk=snakemake.output.risk,
                   figure=snakemake.output.figure)
