"""Rule download: stflow.data.download.download_source; `done` records the settings."""

from _job import stage

with stage(snakemake):
    from stflow.atomic import write_json
    from stflow.data.download import download_source

    download_source(snakemake.params.source, snakemake.params.raw, **snakemake.params.settings)
    write_json(snakemake.params.settings, snakemake.output.done)
