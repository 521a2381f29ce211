# The study's genes, from every sample (genes.scope study, and always for the final model).
rule genes:
    input:
        st=st_files,
        # HEST-bench's published gene list (genes.source: hest-bench) comes with the download
        bench=bench_genes_input,
    output:
        res("{dataset}", L.GENES),
    params:
        settings=genes_settings,
    log:
        res("{dataset}", L.log("genes")),
    benchmark:
        res("{dataset}", L.benchmark("genes"))
    resources:
        mem_mb=grows(8000),
        runtime=30,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/genes.py"


# genes.scope fold: each fold's genes by the same protocol from the counts of its training
# and validation samples only (a checkpoint's fold lists), so its test samples never choose
# its targets; every sample's gene names are read, so a target is measured everywhere.
rule fold_genes:
    input:
        splits=res("{dataset}", L.SPLITS),
        st=st_files,
    output:
        res("{dataset}", L.FOLD_GENES),
    params:
        settings=fold_genes_settings,
    log:
        res("{dataset}", L.log("genes", "{fold}")),
    benchmark:
        res("{dataset}", L.benchmark("genes", "{fold}"))
    resources:
        mem_mb=grows(8000),
        runtime=30,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/fold_genes.py"
