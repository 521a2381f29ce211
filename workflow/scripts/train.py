"""Rule train: stflow.crossval.train.train_fold, on the configured device."""

from _job import device, progress_file, stage

with stage(snakemake):
    from stflow.crossval.train import train_fold

    train_fold(splits=snakemake.input.splits, fold=snakemake.wildcards.fold,
               genes=snakemake.input.genes, st_dir=snakemake.params.st_dir,
               features_dir=snakemake.params.features_dir, graph_dir=snakemake.params.graph_dir,
               model=snakemake.wildcards.model, out=snakemake.output[0],
               params=snakemake.params.model_params, seed=int(snakemake.wildcards.seed),
               device=device(), search=snakemake.params.search, refit=snakemake.params.refit,
               progress=progress_file(snakemake))
