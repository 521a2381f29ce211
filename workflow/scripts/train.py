"""Rule train: stflow.crossval.train.train_fold, on the configured device."""

from _job import device, progress_file, stage

with stage(snakemake):
    from stflow.crossval.train import train_fold

    train_fold(snakemake.input.splits, snakemake.wildcards.fold, snakemake.input.genes,
               snakemake.params.st_dir, snakemake.params.features_dir,
               snakemake.params.graph_dir, snakemake.wildcards.model, snakemake.output[0],
               snakemake.params.model_params, int(snakemake.wildcards.seed), device(),
               snakemake.params.search, snakemake.params.refit,
               progress=progress_file(snakemake))
