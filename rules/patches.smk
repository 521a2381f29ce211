rule patches:
    input:
        res("{dataset}", L.ST),
    output:
        patches=res("{dataset}", L.PATCHES),
        qc=report(res("{dataset}", L.QC),
                  caption="../workflow/report/qc.rst", category="Quality control",
                  subcategory="{dataset}",
                  labels={"dataset": "{dataset}", "sample": "{sample}"}),
    params:
        **STUDY.patch_settings(),
    log:
        res("{dataset}", L.log("patches", L.SAMPLE)),
    benchmark:
        res("{dataset}", L.benchmark("patches", L.SAMPLE))
    resources:
        mem_mb=grows(8000),
        runtime=60,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/patches.py"
