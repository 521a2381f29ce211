"""Rule section_views: stflow.view.build.write_views, a view of each test section of a fold."""

from _job import stage

with stage(snakemake):
    from stflow.view.build import write_views

    write_views(snakemake.input[0], out=snakemake.output[0], threads=snakemake.threads)
