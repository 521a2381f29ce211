"""Rule ingest: stflow.data.ingest.ingest_sample."""

from _job import stage

with stage(snakemake):
    from stflow.data.ingest import ingest_sample

    ingest_sample(snakemake.params.source, snakemake.params.raw, sample=snakemake.wildcards.sample,
                  out=snakemake.output[0], **snakemake.params.options)
