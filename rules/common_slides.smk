# Input functions of rules/slides.smk (deployable models, new slides), kept apart from
# common.smk so the two files change independently. The predict section's own rules (its
# dataset and encoder, um_per_px for plain images) were checked with the rest of the config
# before any job (stflow/config_checks.py); its settings come from the study.


def feature_stores(wc):
    return STUDY.sample_files(wc.dataset, STUDY.features(wc.encoder))


def graph_files(wc):
    """Every sample's graph, for the models that read it (stflow.models.model_specs)."""
    if not reads_graph(wc.model):
        return []
    return STUDY.sample_files(wc.dataset, L.GRAPH)


def patch_files(wc):
    return STUDY.sample_files(wc.dataset, L.PATCHES)


def final_model_dir(dataset=None):
    return STUDY.final_model_dir(dataset)


def slide_targets():
    return STUDY.slide_targets()


def view_targets(wildcards):
    """An input function: the views need the folds, which a study of one patient lacks, so
    they are listed only when `all` is built, not while the workflow is parsed."""
    return STUDY.view_targets()


def slide_options(wc):
    return STUDY.slide_options()


def out_of_fold_predictions(wc):
    return STUDY.out_of_fold(wc.dataset, wc.encoder, wc.model, "predictions")


def out_of_fold_models(wc):
    return STUDY.out_of_fold(wc.dataset, wc.encoder, wc.model, "models")


def cohort_checks(wc):
    """Every slide's check: explicit inputs, so all of them are planned at once."""
    return [res(wc.dataset, L.SLIDE_CHECK.format(slide=name)) for name in STUDY.slides()]


def readable_slide_predictions(wc):
    """The h5ads of the slides whose check read them, known once every check ran (the
    checkpoint): an unreadable slide leaves the cohort to the others."""
    checks = {name: checkpoints.slide_check.get(dataset=wc.dataset, slide=name).output[0]
              for name in STUDY.slides()}
    return [res(wc.dataset, L.SLIDE.format(slide=name))
            for name in STUDY.readable_slides(checks)]
