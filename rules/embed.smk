rule embed:
    input:
        res("{dataset}", "patches/{sample}.h5"),
        # a local checkpoint is an input: replacing it (a newer file) re-embeds
        weights=encoder_weights_input,
    output:
        directory(res("{dataset}", "features/{encoder}/{sample}.zarr")),
    params:
        weights=lambda wc: STUDY.encoder_weights(wc.encoder),
        batch_size=STUDY.embed_batch_size,
    threads: STUDY.threads
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
    script:
        "../workflow/scripts/embed.py"
