rule genes:
    input:
        st=st_files,
        # HEST-bench's published gene list (genes.source: hest-bench) comes with the download
        bench=bench_genes_input,
    output:
        res("{dataset}", "genes.json"),
    params:
        settings=genes_settings,
    log:
        res("{dataset}", "logs/genes.log"),
    benchmark:
        res("{dataset}", "benchmarks/genes.tsv")
    resources:
        mem_mb=grows(8000),
        runtime=30,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/genes.py"
