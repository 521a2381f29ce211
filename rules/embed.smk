rule embed:
    input:
        res("{dataset}", "patches/{sample}.h5"),
    output:
        directory(res("{dataset}", "features/{encoder}/{sample}.zarr")),
    params:
        weights=weights_arg,
        batch_size=config["embed"]["batch_size"],
    threads: config["threads"]
    log:
        res("{dataset}", "logs/embed/{encoder}/{sample}.log"),
    benchmark:
        res("{dataset}", "benchmarks/embed/{encoder}/{sample}.tsv")
    resources:
        mem_mb=grows(16000),
        runtime=120,
        **GPU,
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} python \"$STFLOW_LAUNCHER\" embed --patches {input} "
        "--encoder {wildcards.encoder} "
        "{params.weights} --out {output} --batch-size {params.batch_size} "
        "--device \"$STFLOW_DEVICE\" > {log} 2>&1"
