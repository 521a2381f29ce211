rule train:
    input:
        splits=res("{dataset}", "splits.json"),
        # genes.json, or the fold's own genes/{fold}.json under genes.scope fold
        genes=genes_file,
        # the fold's training and validation samples only (and the graph only where read)
        st=fold_files("st/{sample}.h5ad", ("train", "val")),
        features=fold_files("features/{encoder}/{sample}.zarr", ("train", "val")),
        graph=fold_files("graph/{sample}.npz", ("train", "val"), graph_only=True),
    output:
        directory(res("{dataset}", "models/{encoder}/{model}/seed{seed}/{fold}")),
    params:
        # the model's settings alone: changing them reruns train and what follows only
        model_params=model_params,
        search=lambda wc: STUDY.search(wc.model),
        refit=STUDY.refit,
        st_dir=lambda wc: res(wc.dataset, "st"),
        features_dir=lambda wc: res(wc.dataset, f"features/{wc.encoder}"),
        graph_dir=graph_dir,
    threads: STUDY.threads
    log:
        res("{dataset}", "logs/train/{encoder}/{model}/seed{seed}/{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks/train/{encoder}/{model}/seed{seed}/{fold}.tsv")
    resources:
        mem_mb=grows(16000),
        runtime=720,
        **GPU,
    conda:
        ENV
    script:
        "../workflow/scripts/train.py"


rule predict:
    input:
        model=res("{dataset}", "models/{encoder}/{model}/seed{seed}/{fold}"),
        splits=res("{dataset}", "splits.json"),
        genes=genes_file,
        # the fold's test samples only (and the graph only where read)
        st=fold_files("st/{sample}.h5ad", ("test",)),
        features=fold_files("features/{encoder}/{sample}.zarr", ("test",)),
        graph=fold_files("graph/{sample}.npz", ("test",), graph_only=True),
    output:
        directory(res("{dataset}", "predictions/{encoder}/{model}/seed{seed}/{fold}")),
    params:
        st_dir=lambda wc: res(wc.dataset, "st"),
        features_dir=lambda wc: res(wc.dataset, f"features/{wc.encoder}"),
        graph_dir=graph_dir,
        level=STUDY.interval_level,
    threads: STUDY.threads
    log:
        res("{dataset}", "logs/predict/{encoder}/{model}/seed{seed}/{fold}.log"),
    benchmark:
        res("{dataset}", "benchmarks/predict/{encoder}/{model}/seed{seed}/{fold}.tsv")
    resources:
        mem_mb=grows(16000),
        runtime=60,
        **GPU,
    conda:
        ENV
    script:
        "../workflow/scripts/predict.py"
