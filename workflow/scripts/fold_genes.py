"""Rule fold_genes: stflow.data.genes.select_fold_genes."""

from _job import stage

with stage(snakemake):
    from stflow.data.genes import select_fold_genes

    select_fold_genes(list(snakemake.input.st), splits_path=snakemake.input.splits,
                      fold=snakemake.wildcards.fold, out=snakemake.output[0],
                      **snakemake.params.settings)
