"""Rule train_final: stflow.deploy.final_model.train_final, on the configured device."""

from _job import device, progress_file, stage

with stage(snakemake):
    from stflow.deploy.final_model import train_final

    p = snakemake.params
    train_final(samples_tsv=snakemake.input.samples, genes=snakemake.input.genes, st_dir=p.st_dir,
                features_dir=p.features_dir, graph_dir=p.graph_dir,
                model=snakemake.wildcards.model, out=snakemake.output[0], params=p.model_params,
                seed=p.seed, device=device(), patches_dir=p.patches_dir, search=p.search,
                refit=p.refit, progress=progress_file(snakemake),
                out_of_fold=list(zip(snakemake.input.predictions, snakemake.input.fold_models,
                                     strict=True)))
