rule train:
    input:
        splits=res("{dataset}", "splits.json"),
        genes=res("{dataset}", "genes.json"),
        st=st_files,
        features=feature_stores,
        graph=graph_files,
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
        graph_dir=lambda wc: res(wc.dataset, "graph"),
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
        "OMP_NUM_THREADS={threads} python -m stflow train --splits {input.splits} "
        "--fold {wildcards.fold} --genes {input.genes} --st-dir {params.st_dir} "
        "--features-dir {params.features_dir} --graph-dir {params.graph_dir} "
        "--model {wildcards.model} --params {params.model_params} --search {params.search} "
        "--seed {wildcards.seed} {params.refit} "
        "--device \"$STFLOW_DEVICE\" --out {output} > {log} 2>&1"


rule predict:
    input:
        model=res("{dataset}", "models/{encoder}/{model}/seed{seed}/{fold}"),
        splits=res("{dataset}", "splits.json"),
        genes=res("{dataset}", "genes.json"),
        st=st_files,
        features=feature_stores,
        graph=graph_files,
    output:
        directory(res("{dataset}", "predictions/{encoder}/{model}/seed{seed}/{fold}")),
    params:
        st_dir=lambda wc: res(wc.dataset, "st"),
        features_dir=lambda wc: res(wc.dataset, f"features/{wc.encoder}"),
        graph_dir=lambda wc: res(wc.dataset, "graph"),
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
        "OMP_NUM_THREADS={threads} python -m stflow predict --model-dir {input.model} "
        "--splits {input.splits} --fold {wildcards.fold} --genes {input.genes} "
        "--st-dir {params.st_dir} --features-dir {params.features_dir} "
        "--graph-dir {params.graph_dir} --encoder {wildcards.encoder} "
        "--device \"$STFLOW_DEVICE\" --out-dir {output} > {log} 2>&1"
