rule evaluate:
    input:
        res("{dataset}", "predictions/{encoder}/{model}/{fold}"),
    output:
        res("{dataset}", "metrics/{encoder}/{model}/{fold}.json"),
    log:
        res("{dataset}", "logs/evaluate/{encoder}/{model}/{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks/evaluate/{encoder}/{model}/{fold}.tsv")
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    shell:
        "python -m stflow evaluate --predictions {input}/*.h5ad --encoder {wildcards.encoder} "
        "--model {wildcards.model} --fold {wildcards.fold} --out {output} > {log} 2>&1"


rule aggregate:
    input:
        metric_files,
    output:
        metrics=report(res("{dataset}", "tables/metrics.tsv"),
                       caption="../workflow/report/metrics.rst", category="Results"),
        summary=report(res("{dataset}", "tables/summary.tsv"),
                       caption="../workflow/report/summary.rst", category="Results"),
        markdown=res("{dataset}", "tables/summary.md"),
        genes=report(res("{dataset}", "tables/genes.tsv"),
                     caption="../workflow/report/genes.rst", category="Results"),
    params:
        out_dir=lambda wc: res(wc.dataset, "tables"),
    log:
        res("{dataset}", "logs/aggregate.log"),
    benchmark:
        res("{dataset}", "benchmarks/aggregate.tsv")
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    shell:
        "python -m stflow aggregate --metrics {input} --out-dir {params.out_dir} > {log} 2>&1"
