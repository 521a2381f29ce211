rule evaluate:
    input:
        predictions=res("{dataset}", L.PREDICTIONS),
        # the fold's test samples and the split scheme, recorded in the metrics
        splits=res("{dataset}", L.SPLITS),
    output:
        res("{dataset}", L.METRICS),
    params:
        # the spatial block bootstrap of the fold score (stflow.evaluation.bootstrap)
        bootstrap=STUDY.bootstrap_settings(),
    log:
        res("{dataset}", L.log("evaluate", L.RUN)),
    benchmark:
        res("{dataset}", L.benchmark("evaluate", L.RUN))
    resources:
        mem_mb=grows(4000),
        runtime=10,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/evaluate.py"


rule aggregate:
    input:
        metric_files,
    output:
        metrics=report(res("{dataset}", L.METRICS_TABLE),
                       caption="../workflow/report/metrics.rst", category="Results",
                       subcategory="{dataset}",
                       labels={"dataset": "{dataset}", "table": "metrics"}),
        summary=report(res("{dataset}", L.SUMMARY_TABLE),
                       caption="../workflow/report/summary.rst", category="Results",
                       subcategory="{dataset}",
                       labels={"dataset": "{dataset}", "table": "summary"}),
        markdown=res("{dataset}", L.SUMMARY_MD),
        genes=report(res("{dataset}", L.GENES_TABLE),
                     caption="../workflow/report/genes.rst", category="Results",
                     subcategory="{dataset}", labels={"dataset": "{dataset}", "table": "genes"}),
        # the biomarkers trained beside the benchmark genes, scored apart (not in any mean)
        biomarkers=res("{dataset}", L.BIOMARKERS_TABLE),
    params:
        out_dir=lambda wc: res(wc.dataset, L.TABLES),
    log:
        res("{dataset}", L.log("aggregate")),
    benchmark:
        res("{dataset}", L.benchmark("aggregate"))
    resources:
        mem_mb=grows(2000),
        runtime=10,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/aggregate.py"


rule interval_coverage:
    input:
        predictions=prediction_dirs,
        splits=res("{dataset}", L.SPLITS),
    output:
        tsv=report(res("{dataset}", L.COVERAGE_TABLE),
                   caption="../workflow/report/coverage.rst", category="Results",
                   subcategory="{dataset}",
                   labels={"dataset": "{dataset}", "table": "coverage"}),
        markdown=res("{dataset}", L.COVERAGE_MD),
        risk=res("{dataset}", L.RISK_TABLE),
        figure=report(res("{dataset}", L.RISK_FIGURE),
                      caption="../workflow/report/risk_coverage.rst", category="Figures",
                      subcategory="{dataset}",
                      labels={"dataset": "{dataset}", "figure": "risk against coverage"}),
    params:
        out_dir=lambda wc: res(wc.dataset, L.TABLES),
    log:
        res("{dataset}", L.log("interval_coverage")),
    benchmark:
        res("{dataset}", L.benchmark("interval_coverage"))
    resources:
        mem_mb=grows(4000),
        runtime=20,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/interval_coverage.py"


rule paper_tables:
    input:
        metrics=res("{dataset}", L.METRICS_TABLE),
        splits=res("{dataset}", L.SPLITS),
        # Table 5 reads the jobs' wall-clock times from their benchmark files
        predict=predict_benchmarks,
        embed=embed_benchmarks,
    output:
        methods=report(res("{dataset}", L.table("methods.tsv")),
                       caption="../workflow/report/methods.rst", category="Paper tables",
                       subcategory="{dataset}",
                       labels={"dataset": "{dataset}", "table": "methods (Table 1)"}),
        methods_md=res("{dataset}", L.table("methods.md")),
        priors=report(res("{dataset}", L.table("priors.tsv")),
                      caption="../workflow/report/priors.rst", category="Paper tables",
                      subcategory="{dataset}",
                      labels={"dataset": "{dataset}", "table": "priors (Table 2)"}),
        priors_md=res("{dataset}", L.table("priors.md")),
        denoisers=report(res("{dataset}", L.table("denoisers.tsv")),
                         caption="../workflow/report/denoisers.rst", category="Paper tables",
                         subcategory="{dataset}",
                         labels={"dataset": "{dataset}", "table": "denoisers (Table 3)"}),
        denoisers_md=res("{dataset}", L.table("denoisers.md")),
        ablations=report(res("{dataset}", L.table("ablations.tsv")),
                         caption="../workflow/report/ablations.rst", category="Paper tables",
                         subcategory="{dataset}",
                         labels={"dataset": "{dataset}", "table": "ablations (Table 4)"}),
        ablations_md=res("{dataset}", L.table("ablations.md")),
        inference=report(res("{dataset}", L.table("inference_time.tsv")),
                         caption="../workflow/report/inference_time.rst",
                         category="Paper tables",
                         subcategory="{dataset}",
                         labels={"dataset": "{dataset}", "table": "inference time (Table 5)"}),
        inference_md=res("{dataset}", L.table("inference_time.md")),
    params:
        benchmarks=lambda wc: res(wc.dataset, L.BENCHMARKS),
        out_dir=lambda wc: res(wc.dataset, L.TABLES),
    log:
        res("{dataset}", L.log("paper_tables")),
    benchmark:
        res("{dataset}", L.benchmark("paper_tables"))
    resources:
        mem_mb=grows(2000),
        runtime=10,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/paper_tables.py"
