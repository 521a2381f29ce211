# The download needs the network, which compute nodes often lack: it runs where Snakemake
# runs (the submit host) under profiles/slurm too.
localrules:
    download,


# A failed download must not cost the finished work. update(): Snakemake keeps the manifest
# while the job runs and puts it back when the job fails, so the samples already ingested keep
# their (ancient) input and nothing after them is planned again. But Snakemake then records
# the failed job's parameters for the restored manifest, as if it had succeeded; `done`, an
# ordinary output that a failed job never leaves (and that `all` asks for), is what plans
# the download again on the next run.
rule download:
    input:
        download_inputs,
    output:
        manifest=update(res("{dataset}", L.MANIFEST)),
        done=res("{dataset}", L.DOWNLOAD_DONE),
    params:
        source=lambda wc: DATASETS[wc.dataset]["source"],
        raw=lambda wc: res(wc.dataset, L.RAW),
        settings=download_settings,
    log:
        res("{dataset}", L.log("download")),
    benchmark:
        res("{dataset}", L.benchmark("download"))
    resources:
        mem_mb=grows(2000),
        runtime=120,
        **CLUSTER,
    conda:
        ENV
    script:
        "../workflow/scripts/download.py"
