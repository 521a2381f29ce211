"""Rule predict: stflow.crossval.predict.predict_fold, on the configured device."""

from _job import device, stage

with stage(snakemake):
    from stflow.crossval.predict import predict_fold

    predict_fold(snakemake.input.model, snakemake.input.splits, snakemake.wildcards.fold,
                 snakemake.input.genes, snakemake.params.st_dir, snakemake.params.features_dir,
                 snakemake.params.graph_dir, snakemake.output[0], snakemake.wildcards.encoder,
                 device(), snakemake.params.level)
