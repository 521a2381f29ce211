rule ingest:
    input:
        ingest_manifest,
    output:
        res("{dataset}", L.ST),
    params:
        source=lambda wc: DATASETS[wc.dataset]["source"],
        raw=lambda wc: res(wc.dataset, L.RAW),
        options=ingest_options,
    log:
        res("{dataset}", L.log("ingest", L.SAMPLE)),
    benchmark:
        res("{dataset}", L.benchmark("ingest", L.SAMPLE))
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
        report(res("{dataset}", L.SAMPLES), caption="../workflow/report/samples.rst",
               category="Data", subcategory="{dataset}",
               labels={"dataset": "{dataset}", "table": "samples"}),
    log:
        res("{dataset}", L.log("samples")),
    benchmark:
        res("{dataset}", L.benchmark("samples"))
    resources:
        mem_mb=grows(2000),
        runtime=10,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/samples_table.py"
