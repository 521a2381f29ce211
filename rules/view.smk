# Zoomable views of the predictions in the browser (stflow view; README "Seeing a slide"):
#   slides/{slide}.view/                               beside each new slide's h5ad
#   views/{encoder}/{model}/seed{seed}/{fold}/{sample}.view/
#                                                      each test section of a fold, measured
#                                                      beside predicted (the first seed's)
# Each view opens offline (index.html); OpenSeadragon comes from `make openseadragon`.


rule slide_view:
    input:
        h5ad=res("{dataset}", L.SLIDE),
        image=lambda wc: STUDY.slide_file(wc.slide),
    output:
        directory(res("{dataset}", L.SLIDE_VIEW)),
    threads: STUDY.threads
    log:
        res("{dataset}", L.log("slide_view", "{slide}")),
    benchmark:
        res("{dataset}", L.benchmark("slide_view", "{slide}"))
    resources:
        mem_mb=grows(8000),
        runtime=60,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/slide_view.py"


rule section_views:
    input:
        res("{dataset}", L.PREDICTIONS),
    output:
        directory(res("{dataset}", L.SECTION_VIEWS)),
    threads: STUDY.threads
    log:
        res("{dataset}", L.log("section_views", L.RUN)),
    benchmark:
        res("{dataset}", L.benchmark("section_views", L.RUN))
    resources:
        mem_mb=grows(8000),
        runtime=60,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/section_views.py"
