"""Rule figures: stflow.evaluation.figures.make_figures."""

from _job import stage

with stage(snakemake):
    from stflow.evaluation.figures import make_figures

    p = snakemake.params
    make_figures(p.root, p.encoders, p.models, p.folds, p.genes, p.seeds)
