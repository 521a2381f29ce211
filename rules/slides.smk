# Deployable models and predictions for new slides (config section `predict`).
#   snakemake final_models                 # models/{encoder}/{model}/final for every pair
#   predict: {slides: {name: path}, ...}   # adds results/{dataset}/slides/{name}.h5ad to `all`


wildcard_constraints:
    slide=r"[A-Za-z0-9_.-]+",


include: "common_slides.smk"


rule train_final:
    input:
        samples=res("{dataset}", "samples.tsv"),
        genes=res("{dataset}", "genes.json"),
        st=st_files,
        features=feature_stores,
        graph=graph_files,
        patches=patch_files,
    output:
        directory(res("{dataset}", "models/{encoder}/{model}/final")),
    params:
        model_params=lambda wc: quoted(model_params_json(wc)),
        seed=SEEDS[0],
        st_dir=lambda wc: res(wc.dataset, "st"),
        features_dir=lambda wc: res(wc.dataset, f"features/{wc.encoder}"),
        graph=graph_arg,
        patches_dir=lambda wc: res(wc.dataset, "patches"),
    threads: config["threads"]
    log:
        res("{dataset}", "logs/train_final/{encoder}/{model}.log"),
    benchmark:
        res("{dataset}", "benchmarks/train_final/{encoder}/{model}.tsv")
    resources:
        mem_mb=grows(16000),
        runtime=720,
        **GPU,
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} python \"$STFLOW_LAUNCHER\" train-final --samples-tsv {input.samples} "
        "--genes {input.genes} --st-dir {params.st_dir} "
        "--features-dir {params.features_dir} {params.graph} "
        "--patches-dir {params.patches_dir} --model {wildcards.model} "
        "--params {params.model_params} --seed {params.seed} "
        "--device \"$STFLOW_DEVICE\" --out {output} > {log} 2>&1"


rule predict_slide:
    input:
        model=lambda wc: final_model_dir(wc.dataset),
        slide=lambda wc: config["predict"]["slides"][wc.slide],
    output:
        h5ad=res("{dataset}", "slides/{slide}.h5ad"),
        maps=directory(res("{dataset}", "slides/{slide}_maps")),
    params:
        out_dir=lambda wc: res(wc.dataset, "slides"),
        args=slide_args,
    threads: config["threads"]
    log:
        res("{dataset}", "logs/predict_slide/{slide}.log"),
    benchmark:
        res("{dataset}", "benchmarks/predict_slide/{slide}.tsv")
    resources:
        mem_mb=grows(16000),
        runtime=240,
        **GPU,
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} python \"$STFLOW_LAUNCHER\" predict-slide {input.slide:q} "
        "--model {input.model} --out {params.out_dir} {params.args} "
        "--device \"$STFLOW_DEVICE\" > {log} 2>&1"
