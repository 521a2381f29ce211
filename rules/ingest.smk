rule ingest:
    input:
        ingest_manifest,
    output:
        res("{dataset}", "st/{sample}.h5ad"),
    params:
        source=lambda wc: DATASETS[wc.dataset]["source"],
        raw=lambda wc: res(wc.dataset, "raw"),
        options=ingest_options,
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
    script:
        "../workflow/scripts/ingest.py"


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
    script:
        "../workflow/scripts/samples_table.py"
