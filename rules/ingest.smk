rule ingest:
    input:
        ingest_manifest,
    output:
        res("{dataset}", "st/{sample}.h5ad"),
    params:
        source=lambda wc: DATASETS[wc.dataset]["source"],
        raw=lambda wc: res(wc.dataset, "raw"),
        args=ingest_args,
    log:
        res("{dataset}", "logs/ingest/{sample}.log"),
    benchmark:
        res("{dataset}", "benchmarks/ingest/{sample}.tsv")
    resources:
        mem_mb=grows(4000),
        runtime=30,
        **CLUSTER,
    conda:
        ENV
    shell:
        "python \"$STFLOW_LAUNCHER\" ingest --source {params.source} --raw {params.raw} "
        "--sample {wildcards.sample} "
        "{params.args} --out {output} > {log} 2>&1"


rule samples_table:
    input:
        st_files,
    output:
        report(res("{dataset}", "samples.tsv"), caption="../workflow/report/samples.rst",
               category="Data", subcategory="{dataset}",
               labels={"dataset": "{dataset}", "table": "samples"}),
    log:
        res("{dataset}", "logs/samples.log"),
    benchmark:
        res("{dataset}", "benchmarks/samples.tsv")
    resources:
        mem_mb=grows(2000),
        runtime=10,
        **CLUSTER,
    conda:
        ENV
    shell:
        "python \"$STFLOW_LAUNCHER\" samples --st {input} --out {output} > {log} 2>&1"
