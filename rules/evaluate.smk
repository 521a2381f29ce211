rule evaluate:
    input:
        predictions=res("{dataset}", "predictions/{encoder}/{model}/seed{seed}/{fold}"),
        # the fold's test samples and the split scheme, recorded in the metrics
        splits=res("{dataset}", "splits.json"),
    output:
        res("{dataset}", "metrics/{encoder}/{model}/seed{seed}/{fold}.json"),
    params:
        # the spatial block bootstrap of the fold score (stflow.evaluation.bootstrap)
        bootstrap=STUDY.bootstrap_settings(),
    log:
        res("{dataset}", "logs/evaluate/{encoder}/{model}/seed{seed}/{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks/evaluate/{encoder}/{model}/seed{seed}/{fold}.tsv")
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
        metrics=report(res("{dataset}", "tables/metrics.tsv"),
                       caption="../workflow/report/metrics.rst", category="Results",
                       subcategory="{dataset}",
                       labels={"dataset": "{dataset}", "table": "metrics"}),
        summary=report(res("{dataset}", "tables/summary.tsv"),
                       caption="../workflow/report/summary.rst", category="Results",
                       subcategory="{dataset}",
                       labels={"dataset": "{dataset}", "table": "summary"}),
        markdown=res("{dataset}", "tables/summary.md"),
        genes=report(res("{dataset}", "tables/genes.tsv"),
                     caption="../workflow/report/genes.rst", category="Results",
                     subcategory="{dataset}", labels={"dataset": "{dataset}", "table": "genes"}),
    params:
        out_dir=lambda wc: res(wc.dataset, "tables"),
    log:
        res("{dataset}", "logs/aggregate.log"),
    benchmark:
        res("{dataset}", "benchmarks/aggregate.tsv")
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
        splits=res("{dataset}", "splits.json"),
    output:
        tsv=report(res("{dataset}", "tables/coverage.tsv"),
                   caption="../workflow/report/coverage.rst", category="Results",
                   subcategory="{dataset}",
                   labels={"dataset": "{dataset}", "table": "coverage"}),
        markdown=res("{dataset}", "tables/coverage.md"),
        risk=res("{dataset}", "tables/risk_coverage.tsv"),
        figure=report(res("{dataset}", "figures/risk_coverage.png"),
                      caption="../workflow/report/risk_coverage.rst", category="Figures",
                      subcategory="{dataset}",
                      labels={"dataset": "{dataset}", "figure": "risk against coverage"}),
    params:
        out_dir=lambda wc: res(wc.dataset, "tables"),
    log:
        res("{dataset}", "logs/interval_coverage.log"),
    benchmark:
        res("{dataset}", "benchmarks/interval_coverage.tsv")
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
        metrics=res("{dataset}", "tables/metrics.tsv"),
        splits=res("{dataset}", "splits.json"),
        # Table 5 reads the jobs' wall-clock times from their benchmark files
        predict=predict_benchmarks,
        embed=embed_benchmarks,
    output:
        methods=report(res("{dataset}", "tables/methods.tsv"),
                       caption="../workflow/report/methods.rst", category="Paper tables",
                       subcategory="{dataset}",
                       labels={"dataset": "{dataset}", "table": "methods (Table 1)"}),
        methods_md=res("{dataset}", "tables/methods.md"),
        priors=report(res("{dataset}", "tables/priors.tsv"),
                      caption="../workflow/report/priors.rst", category="Paper tables",
                      subcategory="{dataset}",
                      labels={"dataset": "{dataset}", "table": "priors (Table 2)"}),
        priors_md=res("{dataset}", "tables/priors.md"),
        denoisers=report(res("{dataset}", "tables/denoisers.tsv"),
                         caption="../workflow/report/denoisers.rst", category="Paper tables",
                         subcategory="{dataset}",
                         labels={"dataset": "{dataset}", "table": "denoisers (Table 3)"}),
        denoisers_md=res("{dataset}", "tables/denoisers.md"),
        ablations=report(res("{dataset}", "tables/ablations.tsv"),
                         caption="../workflow/report/ablations.rst", category="Paper tables",
                         subcategory="{dataset}",
                         labels={"dataset": "{dataset}", "table": "ablations (Table 4)"}),
        ablations_md=res("{dataset}", "tables/ablations.md"),
        inference=report(res("{dataset}", "tables/inference_time.tsv"),
                         caption="../workflow/report/inference_time.rst",
                         category="Paper tables",
                         subcategory="{dataset}",
                         labels={"dataset": "{dataset}", "table": "inference time (Table 5)"}),
        inference_md=res("{dataset}", "tables/inference_time.md"),
    params:
        benchmarks=lambda wc: res(wc.dataset, "benchmarks"),
        out_dir=lambda wc: res(wc.dataset, "tables"),
    log:
        res("{dataset}", "logs/paper_tables.log"),
    benchmark:
        res("{dataset}", "benchmarks/paper_tables.tsv")
    resources:
        mem_mb=grows(2000),
        runtime=10,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/paper_tables.py"
