# A checkpoint: train and predict read their fold's samples from its output.
checkpoint splits:
    input:
        samples=res("{dataset}", L.SAMPLES),
        # HEST-bench's published splits/ (splits.source: hest-bench) come with the download
        bench=bench_splits_input,
    output:
        res("{dataset}", L.SPLITS),
    params:
        settings=splits_settings,
        seed=SEEDS[0],  # the same folds for every seed
    log:
        res("{dataset}", L.log("splits")),
    benchmark:
        res("{dataset}", L.benchmark("splits"))
    resources:
        mem_mb=grows(1000),
        runtime=5,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/splits.py"
