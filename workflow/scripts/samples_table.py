"""Rule samples_table: stflow.data.ingest.write_samples_tsv."""

from _job import stage

with stage(snakemake):
    from stflow.data.ingest import write_samples_tsv

    write_samples_tsv(list(snakemake.input), snakemake.output[0])
