# Zoomable views of the predictions in the browser (stflow view; README "Seeing a slide"):
#   slides/{slide}.view/                               beside each new slide's h5ad
#   views/{encoder}/{model}/seed{seed}/{fold}/{sample}.view/
#                                                      each test section of a fold, measured
#                                                      beside predicted (the first seed's)
# Each view opens offline (index.html); OpenSeadragon comes from `make openseadragon`.


rule slide_view:
    input:
        h5ad=res("{dataset}", "slides/{slide}.h5ad"),
        image=lambda wc: STUDY.slide_file(wc.slide),
    output:
        directory(res("{dataset}", "slides/{slide}.view")),
    threads: STUDY.threads
    log:
        res("{dataset}", "logs/slide_view/{slide}.log"),
    benchmark:
        res("{dataset}", "benchmarks/slide_view/{slide}.tsv")
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
        res("{dataset}", "predictions/{encoder}/{model}/seed{seed}/{fold}"),
    output:
        directory(res("{dataset}", "views/{encoder}/{model}/seed{seed}/{fold}")),
    threads: STUDY.threads
    log:
        res("{dataset}", "logs/section_views/{encoder}/{model}/seed{seed}/{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks/section_views/{encoder}/{model}/seed{seed}/{fold}.tsv")
    resources:
        mem_mb=grows(8000),
        runtime=60,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/section_views.py"
