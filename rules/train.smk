rule train:
    input:
        splits=res("{dataset}", L.SPLITS),
        # genes.json, or the fold's own genes/{fold}.json under genes.scope fold
        genes=genes_file,
        # the fold's training and validation samples only (and the graph only where read)
        st=fold_files(L.ST, ("train", "val")),
        features=fold_files(L.FEATURES, ("train", "val")),
        graph=fold_files(L.GRAPH, ("train", "val"), graph_only=True),
    output:
        directory(res("{dataset}", L.MODEL)),
    params:
        # the model's settings alone: changing them reruns train and what follows only
        model_params=model_params,
        search=lambda wc: STUDY.search(wc.model),
        refit=STUDY.refit,
        st_dir=lambda wc: res(wc.dataset, L.ST_DIR),
        features_dir=lambda wc: res(wc.dataset, L.ENCODER_FEATURES.format(encoder=wc.encoder)),
        graph_dir=graph_dir,
    threads: STUDY.threads
    log:
        res("{dataset}", L.log("train", L.RUN)),
    benchmark:
        res("{dataset}", L.benchmark("train", L.RUN))
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
        model=res("{dataset}", L.MODEL),
        splits=res("{dataset}", L.SPLITS),
        genes=genes_file,
        # the fold's test samples only (and the graph only where read)
        st=fold_files(L.ST, ("test",)),
        features=fold_files(L.FEATURES, ("test",)),
        graph=fold_files(L.GRAPH, ("test",), graph_only=True),
    output:
        directory(res("{dataset}", L.PREDICTIONS)),
    params:
        st_dir=lambda wc: res(wc.dataset, L.ST_DIR),
        features_dir=lambda wc: res(wc.dataset, L.ENCODER_FEATURES.format(encoder=wc.encoder)),
        graph_dir=graph_dir,
        level=STUDY.interval_level,
    threads: STUDY.threads
    log:
        res("{dataset}", L.log("predict", L.RUN)),
    benchmark:
        res("{dataset}", L.benchmark("predict", L.RUN))
    resources:
        mem_mb=grows(16000),
        runtime=60,
        **GPU,
    conda:
        ENV
    script:
        "../workflow/scripts/predict.py"
