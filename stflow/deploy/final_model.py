"""The deployable model of a study: trained on all its samples, no test fold.

``stflow train-final`` writes ``models/{encoder}/{model}/final`` next to the per-fold models
used for scoring. Validation is drawn from the samples as the folds draw it
(:func:`stflow.data.splits.choose_val`: one seeded sample, preferring a patient's only one; with a
single sample, a contiguous held-out region of it). The folder carries ``deploy.json``, so
``stflow predict-slide`` needs nothing else.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from stflow.atomic import atomic_output
from stflow.crossval.inputs import features_identity, load_slides, read_genes
from stflow.crossval.train import history_frame
from stflow.data.splits import choose_val, read_samples
from stflow.deploy.deployment import describe_training, write_deployment
from stflow.errors import input_error
from stflow.models.registry import build_estimator, save_estimator

log = logging.getLogger(__name__)

FINAL = "final"


def train_final(samples_tsv: str | Path, genes: str | Path, st_dir: str | Path,
                features_dir: str | Path, graph_dir: str | Path | None, model: str,
                out: str | Path, params: dict[str, Any] | None = None, seed: int = 0,
                device: str = "auto", patches_dir: str | Path | None = None) -> Path:
    """Fit ``model`` on every sample of ``samples_tsv`` and write a deployable folder atomically."""
    patients = read_samples(samples_tsv)
    val_samples = choose_val(list(patients), patients, np.random.default_rng(seed))
    samples = [s for s in patients if s not in val_samples]
    gene_list = read_genes(genes)
    estimator = build_estimator(model, params, seed, device=device)
    features = features_identity(features_dir, samples + val_samples)
    train = load_slides(samples, gene_list, st_dir, features_dir, graph_dir)
    val = load_slides(val_samples, gene_list, st_dir, features_dir, graph_dir)
    log.info("training the final %s on %d samples, validating on %s", model, len(train),
             val_samples or "a held-out region of the sample")
    rows = estimator.fit(train, val)
    deployment = describe_training(model, gene_list, features, train + val, features_dir,
                                   graph_dir, params, FINAL, patches_dir)
    if deployment is None:
        raise input_error(patches_dir or features_dir, "the training patch files are missing or "
                          "disagree, so the final model's patch window is unknown",
                          "pass --patches-dir with the patches/{sample}.h5 of these samples")
    out = Path(out)
    with atomic_output(out) as tmp:
        save_estimator(model, estimator, tmp)
        (tmp / "params.json").write_text(json.dumps(
            {"model": model, "params": params or {}, "seed": seed, "fold": FINAL,
             "train": samples, "val": val_samples, "genes": gene_list, "features": features}, indent=2))
        history_frame(rows).to_csv(tmp / "history.tsv", sep="\t", index=False)
        write_deployment(tmp, deployment)
    return out
