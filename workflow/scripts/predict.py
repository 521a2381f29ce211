"""Rule predict: stflow.crossval.predict.predict_fold, on the configured device."""

from _job import device, stage

with stage(snakemake):
    from stflow.crossval.predict import predict_fold

    predict_fold(snakemake.input.model, splits=snakemake.input.splits,
                 fold=snakemake.wildcards.fold, genes=snakemake.input.genes,
                 st_dir=snakemake.params.st_dir, features_dir=snakemake.params.features_dir,
                 graph_dir=snakemake.params.graph_dir, out_dir=snakemake.output[0],
                 encoder=snakemake.wildcards.encoder, device=device(),
                 level=snakemake.params.level)
