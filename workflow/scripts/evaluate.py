"""Rule evaluate: stflow.evaluation.fold_scores.write_fold_scores."""

from _job import stage

with stage(snakemake):
    from stflow.evaluation.bootstrap import BootstrapSettings
    from stflow.evaluation.fold_scores import prediction_files, write_fold_scores

    wc = snakemake.wildcards
    write_fold_scores(prediction_files(snakemake.input.predictions), splits=snakemake.input.splits,
                      encoder=wc.encoder, model=wc.model, fold=wc.fold, seed=int(wc.seed),
                      out=snakemake.output[0],
                      bootstrap=BootstrapSettings(**snakemake.params.bootstrap))
