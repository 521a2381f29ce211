rule graph:
    input:
        res("{dataset}", "patches/{sample}.h5"),
    output:
        res("{dataset}", "graph/{sample}.npz"),
    params:
        k=STUDY.graph_k,
    log:
        res("{dataset}", "logs/graph/{sample}.log"),
    benchmark:
        res("{dataset}", "benchmarks/graph/{sample}.tsv")
    resources:
        mem_mb=grows(2000),
        runtime=10,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/graph.py"
