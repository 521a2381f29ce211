rule graph:
    input:
        res("{dataset}", L.PATCHES),
    output:
        res("{dataset}", L.GRAPH),
    params:
        k=STUDY.graph_k,
    log:
        res("{dataset}", L.log("graph", L.SAMPLE)),
    benchmark:
        res("{dataset}", L.benchmark("graph", L.SAMPLE))
    resources:
        mem_mb=grows(2000),
        runtime=10,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/graph.py"
