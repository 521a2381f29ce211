"""Rule train_final: stflow.deploy.final_model.train_final, on the configured device."""

from _job import device, progress_file, stage

with stage(snakemake):
    from stflow.deploy.final_model import train_final

    p = snakemake.params
    train_final(snakemake.input.samples, snakemake.input.genes, p.st_dir, p.features_dir,
                p.graph_dir, snakemake.wildcards.model, snakemake.output[0], p.model_params,
                p.seed, device(), p.patches_dir, search=p.search, refit=p.refit,
                progress=progress_file(snakemake))
