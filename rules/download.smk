# update(): Snakemake keeps the manifest while the download runs and puts it back when the
# job fails, so one bad sample added to a finished study does not leave the ingested samples
# without their (ancient) input and plan everything again.
rule download:
    output:
        update(res("{dataset}", "raw/MANIFEST.tsv")),
    params:
        source=lambda wc: DATASETS[wc.dataset]["source"],
        raw=lambda wc: res(wc.dataset, "raw"),
        args=download_args,
    log:
        res("{dataset}", "logs/download.log"),
    benchmark:
        res("{dataset}", "benchmarks/download.tsv")
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        ENV
    shell:
        "python -m stflow download --source {params.source} --out {params.raw} {params.args} "
        "> {log} 2>&1"
