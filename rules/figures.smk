rule figures:
    input:
        metrics=res("{dataset}", L.METRICS_TABLE),
        predictions=prediction_dirs,
        models=model_dirs,
        st=st_files,
    output:
        comparison=report(res("{dataset}", L.COMPARISON),
                          caption="../workflow/report/comparison.rst", category="Figures",
                          subcategory="{dataset}",
                          labels={"dataset": "{dataset}", "figure": "model comparison"}),
        curves=report(res("{dataset}", L.CURVES),
                      caption="../workflow/report/curves.rst", category="Figures",
                      subcategory="{dataset}",
                      labels={"dataset": "{dataset}", "figure": "training curves"}),
        biomarkers=report(directory(res("{dataset}", L.BIOMARKERS)),
                          patterns=["{encoder}/{fold}.png"],
                          caption="../workflow/report/biomarkers.rst",
                          category="Biomarker maps", subcategory="{dataset}",
                          labels={"dataset": "{dataset}", "encoder": "{encoder}",
                                  "fold": "{fold}"}),
    params:
        root=lambda wc: res(wc.dataset, ""),
        encoders=STUDY.encoders,
        models=STUDY.models,
        seeds=SEEDS,
        folds=lambda wc: STUDY.folds(wc.dataset),
        genes=STUDY.figure_genes,
    log:
        res("{dataset}", L.log("figures")),
    benchmark:
        res("{dataset}", L.benchmark("figures"))
    resources:
        mem_mb=grows(8000),
        runtime=30,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/figures.py"
