# Functions of rules/slides.smk (deployable models, new slides), kept apart from
# common.smk so the two files change independently.


# The predict section's own rules (its dataset and encoder, um_per_px for plain images) were
# checked with the rest of the config before any job (stflow/config_checks.py).


def feature_stores(wc):
    return [res(wc.dataset, f"features/{wc.encoder}/{s}.zarr") for s in samples(wc.dataset)]


def graph_files(wc):
    """Every sample's graph, for the models that read it (see GRAPH_MODELS)."""
    if wc.model not in GRAPH_MODELS:
        return []
    return [res(wc.dataset, f"graph/{s}.npz") for s in samples(wc.dataset)]


def patch_files(wc):
    return [res(wc.dataset, f"patches/{s}.h5") for s in samples(wc.dataset)]


def predict_dataset():
    """Whose final model predicts the slides: predict.dataset, else the first dataset."""
    return config["predict"]["dataset"] or next(iter(DATASETS))


def predict_encoder():
    """The encoder of the predicting model: predict.encoder, else the first encoder."""
    return config["predict"]["encoder"] or config["encoders"][0]


def final_model_dir(dataset=None):
    """models/{encoder}/{model}/final of the model named by the predict section."""
    return res(dataset or predict_dataset(),
               f"models/{predict_encoder()}/{config['predict']['model']}/final")


def slide_targets():
    """The h5ad and maps of every configured slide; nothing when predict.slides is empty."""
    slides = config["predict"]["slides"]
    if not slides:
        return []
    dataset = predict_dataset()
    return [res(dataset, f"slides/{name}{suffix}") for name in slides
            for suffix in (".h5ad", "_maps")]


def slide_options(wc):
    """Fields of stflow.deploy.predict_slide.SlideOptions but the device: sampling, interval
    level, spot lattice, tissue filter, genes drawn as maps and the encoder's local weights."""
    predict = config["predict"]
    options = {"n_samples": predict["n_samples"], "seed": SEEDS[0],
               "level": config["intervals"]["level"],
               "batch_size": config["embed"]["batch_size"],
               "weights": config["encoder_weights"].get(predict_encoder()),
               "spatialdata": True}  # slides/{slide}.zarr beside the h5ad
    options.update({key: predict[key] for key in ("pitch_um", "layout", "min_tissue")
                    if predict[key] is not None})
    genes = predict["genes"] if predict["genes"] is not None else config["figures"]["genes"]
    options["genes"] = tuple(genes or ())
    return options
