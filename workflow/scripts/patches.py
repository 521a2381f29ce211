"""Rule patches: stflow.data.patches.patches_from_h5ad."""

from _job import stage

with stage(snakemake):
    from stflow.data.patches import patches_from_h5ad

    patches_from_h5ad(snakemake.input[0], snakemake.output.patches, qc_png=snakemake.output.qc,
                      size_um=snakemake.params.size_um, size_px=snakemake.params.size_px,
                      min_tissue=snakemake.params.min_tissue)
