"""Rule figures: stflow.evaluation.figures.make_figures."""

from _job import stage

with stage(snakemake):
    from stflow.evaluation.figures import make_figures

    p = snakemake.params
    make_figures(p.root, encoders=p.encoders, models=p.models, folds=p.folds, genes=p.genes,
                 seeds=p.seeds)
