rule embed:
    input:
        res("{dataset}", L.PATCHES),
        # a local checkpoint is an input: replacing it (a newer file) re-embeds
        weights=encoder_weights_input,
    output:
        directory(res("{dataset}", L.FEATURES)),
    params:
        weights=lambda wc: STUDY.encoder_weights(wc.encoder),
        batch_size=STUDY.embed_batch_size,
    threads: STUDY.threads
    log:
        res("{dataset}", L.log("embed", L.ENCODER_SAMPLE)),
    benchmark:
        res("{dataset}", L.benchmark("embed", L.ENCODER_SAMPLE))
    resources:
        mem_mb=grows(16000),
        runtime=120,
        **GPU,
    conda:
        ENV
    script:
        "../workflow/scripts/embed.py"
