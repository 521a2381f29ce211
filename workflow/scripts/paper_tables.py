"""Rule paper_tables: stflow.evaluation.paper_tables.write_paper_tables_of_run."""

from _job import stage

with stage(snakemake):
    from stflow.evaluation.paper_tables import write_paper_tables_of_run

    write_paper_tables_of_run(snakemake.input.metrics, splits=snakemake.input.splits,
                              benchmarks=snakemake.params.benchmarks,
                              out_dir=snakemake.params.out_dir)
