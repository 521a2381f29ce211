# Deployable models and predictions for new slides (config section `predict`).
#   snakemake final_models                 # models/{encoder}/{model}/final for every pair
#   predict: {slides: {name: path}, ...}   # adds results/{dataset}/slides/{name}.h5ad to `all`
#   predict: {sheet: slides.tsv}           # a cohort: also slides/cohort.{h5ad,tsv}, cohort_maps/
# An unreadable slide fails its own predict_slide job; with --keep-going the others finish and
# the cohort (built from the slides whose check read them) lists it as missing.


# a slide's name, but not where the cohort's own files stand (slides/cohort.h5ad,
# slides/cohort_maps/: rule cohort's), so predict_slide is never asked for them (a slide
# named cohort is refused by the config check)
wildcard_constraints:
    slide=rf"(?!{L.COHORT}(?:\.h5ad|_maps|\.zarr)$)[A-Za-z0-9_.-]+",


include: "common_slides.smk"


rule train_final:
    input:
        samples=res("{dataset}", L.SAMPLES),
        # the study-wide genes.json under either genes.scope: this model trains on every
        # sample, so genes chosen from all of them leave nothing out it is tested on
        genes=res("{dataset}", L.GENES),
        st=st_files,
        features=feature_stores,
        graph=graph_files,
        patches=patch_files,
        # the study's out-of-fold predictions calibrate the intervals across patients
        # (intervals.calibration; none where they cannot: then within the training patients)
        predictions=out_of_fold_predictions,
        fold_models=out_of_fold_models,
    output:
        directory(res("{dataset}", L.FINAL_MODEL)),
    params:
        # the study's own selection, as each fold ran it: search on validation, then refit
        model_params=model_params,
        search=lambda wc: STUDY.search(wc.model),
        refit=STUDY.refit,
        seed=SEEDS[0],
        st_dir=lambda wc: res(wc.dataset, L.ST_DIR),
        features_dir=lambda wc: res(wc.dataset, L.ENCODER_FEATURES.format(encoder=wc.encoder)),
        graph_dir=graph_dir,
        patches_dir=lambda wc: res(wc.dataset, L.PATCHES_DIR),
    threads: STUDY.threads
    log:
        res("{dataset}", L.log("train_final", L.FINAL)),
    benchmark:
        res("{dataset}", L.benchmark("train_final", L.FINAL))
    resources:
        mem_mb=grows(16000),
        runtime=720,
        **GPU,
    conda:
        ENV
    script:
        "../workflow/scripts/train_final.py"


rule predict_slide:
    input:
        model=lambda wc: final_model_dir(wc.dataset),
        slide=lambda wc: STUDY.slide_file(wc.slide),
    output:
        h5ad=res("{dataset}", L.SLIDE),
        maps=directory(res("{dataset}", L.SLIDE_MAPS)),
        spatialdata=directory(res("{dataset}", L.SLIDE_ZARR)),
    params:
        out_dir=lambda wc: res(wc.dataset, L.SLIDES),
        um_per_px=lambda wc: STUDY.slide_um_per_px(wc.slide),
        options=slide_options,
    threads: STUDY.threads
    log:
        res("{dataset}", L.log("predict_slide", "{slide}")),
    benchmark:
        res("{dataset}", L.benchmark("predict_slide", "{slide}"))
    resources:
        mem_mb=grows(16000),
        runtime=240,
        **GPU,
    conda:
        ENV
    script:
        "../workflow/scripts/predict_slide.py"


checkpoint slide_check:
    input:
        image=lambda wc: STUDY.slide_file(wc.slide),
    output:
        res("{dataset}", L.SLIDE_CHECK),
    params:
        um_per_px=lambda wc: STUDY.slide_um_per_px(wc.slide),
    log:
        res("{dataset}", L.log("slide_check", "{slide}")),
    benchmark:
        res("{dataset}", L.benchmark("slide_check", "{slide}"))
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    script:
        "../workflow/scripts/slide_check.py"


rule cohort:
    input:
        checks=cohort_checks,
        h5ads=readable_slide_predictions,
    output:
        h5ad=res("{dataset}", L.COHORT_H5AD),
        tsv=report(res("{dataset}", L.COHORT_TSV), caption="../workflow/report/cohort.rst",
                   category="Cohort", subcategory="{dataset}",
                   labels={"dataset": "{dataset}", "table": "cohort"}),
        maps=report(directory(res("{dataset}", L.COHORT_MAPS)), patterns=["{gene}.png"],
                    caption="../workflow/report/cohort.rst", category="Cohort",
                    subcategory="{dataset}",
                    labels={"dataset": "{dataset}", "gene": "{gene}"}),
    params:
        slides=lambda wc: list(STUDY.slides()),
        metadata=lambda wc: STUDY.slide_metadata(),
        genes=lambda wc: list(STUDY.slide_options()["genes"]),
    log:
        res("{dataset}", L.log("cohort")),
    benchmark:
        res("{dataset}", L.benchmark("cohort"))
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        ENV
    script:
        "../workflow/scripts/cohort.py"
