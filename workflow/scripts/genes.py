"""Rule genes: stflow.data.genes.select_target_genes."""

from _job import stage

with stage(snakemake):
    from stflow.data.genes import select_target_genes

    select_target_genes(list(snakemake.input.st), snakemake.output[0],
                        **snakemake.params.settings)
