"""Rule slide_view: stflow.view.build.write_view, beside the new slide's h5ad."""

from _job import stage

with stage(snakemake):
    from stflow.view.build import write_view

    write_view(snakemake.input.h5ad, out=snakemake.output[0], image=snakemake.input.image,
               threads=snakemake.threads)
