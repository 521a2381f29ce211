rule patches:
    input:
        res("{dataset}", "st/{sample}.h5ad"),
    output:
        patches=res("{dataset}", "patches/{sample}.h5"),
        qc=report(res("{dataset}", "figures/qc/{sample}.png"),
                  caption="../workflow/report/qc.rst", category="Quality control",
                  subcategory="{dataset}",
                  labels={"dataset": "{dataset}", "sample": "{sample}"}),
    params:
        **STUDY.patch_settings(),
    log:
        res("{dataset}", "logs/patches/{sample}.log"),
    benchmark:
        res("{dataset}", "benchmarks/patches/{sample}.tsv")
    resources:
        mem_mb=grows(8000),
        runtime=60,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/patches.py"
