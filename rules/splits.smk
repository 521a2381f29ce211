# A checkpoint: train and predict read their fold's samples from its output.
checkpoint splits:
    input:
        samples=res("{dataset}", "samples.tsv"),
        # HEST-bench's published splits/ (splits.source: hest-bench) come with the download
        bench=bench_splits_input,
    output:
        res("{dataset}", "splits.json"),
    params:
        settings=splits_settings,
        seed=SEEDS[0],  # the same folds for every seed
    log:
        res("{dataset}", "logs/splits.log"),
    benchmark:
        res("{dataset}", "benchmarks/splits.tsv")
    resources:
        mem_mb=grows(1000),
        runtime=5,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/splits.py"
