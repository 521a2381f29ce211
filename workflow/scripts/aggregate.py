"""Rule aggregate: stflow.evaluation.summary.write_summary."""

from _job import stage

with stage(snakemake):
    from stflow.evaluation.summary import write_summary

    write_summary(list(snakemake.input), out_dir=snakemake.params.out_dir)
