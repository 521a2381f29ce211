rule train:
    input:
        splits=res("{dataset}", "splits.json"),
        genes=res("{dataset}", "genes.json"),
        # the fold's training and validation samples only (and the graph only where read)
        st=fold_files("st/{sample}.h5ad", ("train", "val")),
        features=fold_files("features/{encoder}/{sample}.zarr", ("train", "val")),
        graph=fold_files("graph/{sample}.npz", ("train", "val"), graph_only=True),
    output:
        directory(res("{dataset}", "models/{encoder}/{model}/seed{seed}/{fold}")),
    params:
        # the model's settings alone: changing them reruns train and what follows only
        model_params=lambda wc: quoted(model_params_json(wc)),
        search=lambda wc: quoted(json.dumps(config["search"].get(wc.model, {}),
                                            sort_keys=True)),
        refit="--refit" if config["refit"] else "",
        st_dir=lambda wc: res(wc.dataset, "st"),
        features_dir=lambda wc: res(wc.dataset, f"features/{wc.encoder}"),
        graph=graph_arg,
    threads: config["threads"]
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
    shell:
        "OMP_NUM_THREADS={threads} python \"$STFLOW_LAUNCHER\" train --splits {input.splits} "
        "--fold {wildcards.fold} --genes {input.genes} --st-dir {params.st_dir} "
        "--features-dir {params.features_dir} {params.graph} "
        "--model {wildcards.model} --params {params.model_params} --search {params.search} "
        "--seed {wildcards.seed} {params.refit} "
        "--device \"$STFLOW_DEVICE\" --out {output} > {log} 2>&1"


rule predict:
    input:
        model=res("{dataset}", "models/{encoder}/{model}/seed{seed}/{fold}"),
        splits=res("{dataset}", "splits.json"),
        genes=res("{dataset}", "genes.json"),
        # the fold's test samples only (and the graph only where read)
        st=fold_files("st/{sample}.h5ad", ("test",)),
        features=fold_files("features/{encoder}/{sample}.zarr", ("test",)),
        graph=fold_files("graph/{sample}.npz", ("test",), graph_only=True),
    output:
        directory(res("{dataset}", "predictions/{encoder}/{model}/seed{seed}/{fold}")),
    params:
        st_dir=lambda wc: res(wc.dataset, "st"),
        features_dir=lambda wc: res(wc.dataset, f"features/{wc.encoder}"),
        graph=graph_arg,
    threads: config["threads"]
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
    shell:
        "OMP_NUM_THREADS={threads} python \"$STFLOW_LAUNCHER\" predict --model-dir {input.model} "
        "--splits {input.splits} --fold {wildcards.fold} --genes {input.genes} "
        "--st-dir {params.st_dir} --features-dir {params.features_dir} "
        "{params.graph} --encoder {wildcards.encoder} "
        "--device \"$STFLOW_DEVICE\" --out-dir {output} > {log} 2>&1"
