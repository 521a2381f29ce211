"""Rule fold_genes: stflow.data.genes.select_fold_genes."""

from _job import stage

with stage(snakemake):
    from stflow.data.genes import select_fold_genes

    select_fold_genes(list(snakemake.input.st), snakemake.input.splits,
                      snakemake.wildcards.fold, snakemake.output[0],
                      **snakemake.params.settings)
