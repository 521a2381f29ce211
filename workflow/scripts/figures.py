"""Rule figures: stflow.evaluation.figures.make_figures."""

from _job import stage

with stage(snakemake):
    from stflow.evaluation.figures import figure_inputs, make_figures

    p, out = snakemake.params, snakemake.output
    inputs = figure_inputs(p.root, encoders=p.encoders, models=p.models, folds=p.folds,
                           seeds=p.seeds)
    make_figures(inputs, encoders=p.encoders, models=p.models, genes=p.genes,
                 comparison=out.comparison, curves=out.curves, biomarkers=out.biomarkers)
