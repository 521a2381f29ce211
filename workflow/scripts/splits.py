"""Rule splits: stflow.data.splits.write_splits."""

from _job import stage

with stage(snakemake):
    from stflow.data.splits import write_splits

    write_splits(snakemake.input.samples, snakemake.output[0], seed=snakemake.params.seed,
                 **snakemake.params.settings)
