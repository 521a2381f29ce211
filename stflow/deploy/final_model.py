"""The deployable model of a study: trained on all its samples, no test fold.

``stflow train-final`` writes ``models/{encoder}/{model}/final`` next to the per-fold models
used for scoring, by the path each fold took (:func:`stflow.training.fit.train_validated`):
the study's search on its own validation split, then its refit when asked, then the interval
calibration (across patients on the study's out-of-fold predictions where they are given,
else on its own validation spots). Validation is drawn from the samples as the folds draw it
(:func:`stflow.data.splits.choose_val`: one seeded sample, preferring a patient's only one;
with a single sample, a contiguous held-out region of it). The folder carries what was
chosen (``search.json``, ``params.json``) and ``deploy.json``, so ``stflow predict-slide``
needs nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from stflow.data.loading import features_identity, load_slides, read_genes
from stflow.data.splits import choose_val, read_samples
from stflow.errors import input_error
from stflow.intervals.across_patients import calibrate_across_patients
from stflow.models.progress import ProgressFile
from stflow.records.deployment import Deployment, describe_training, write_deployment
from stflow.training.fit import check_request, train_validated
from stflow.training.folder import write_model_folder

log = logging.getLogger(__name__)

FINAL = "final"


def train_final(*, samples_tsv: str | Path, genes: str | Path, st_dir: str | Path,
                features_dir: str | Path, graph_dir: str | Path | None, model: str,
                out: str | Path, params: dict[str, Any] | None = None, seed: int = 0,
                device: str = "auto", patches_dir: str | Path | None = None,
                search: dict[str, Any] | None = None, refit: bool = False,
                progress: str | Path | None = None,
                out_of_fold: Sequence[tuple[str | Path, str | Path]] = ()) -> Path:
    """Fit ``model`` on every sample of ``samples_tsv`` as each fold was fitted (``search``,
    ``refit``) and write a deployable folder atomically; ``progress`` is the TSV each
    epoch's row is appended to as it ends. ``out_of_fold``: the study's (prediction folder,
    fold model folder) pairs of this encoder and model, which calibrate the intervals across
    patients (:mod:`stflow.intervals.across_patients`); none: within the training patients."""
    patients = read_samples(samples_tsv)
    val_samples = choose_val(list(patients), patients, np.random.default_rng(seed))
    samples = [s for s in patients if s not in val_samples]
    gene_list = read_genes(genes)
    check_request(model, params, search, seed, device)
    features = features_identity(features_dir, samples + val_samples)
    train = load_slides(samples, gene_list, st_dir, features_dir, graph_dir)
    val = load_slides(val_samples, gene_list, st_dir, features_dir, graph_dir)

    def deployment_of(settings: dict[str, Any] | None) -> Deployment:
        found = describe_training(model, gene_list, features, train + val, features_dir,
                                  graph_dir, settings, FINAL, patches_dir)
        if found is None:
            raise input_error(patches_dir or features_dir, "the training patch files are "
                              "missing or disagree, so the final model's patch window is "
                              "unknown", "pass --patches-dir with the patches/{sample}.h5 of "
                              "these samples")
        return found

    deployment_of(params)  # refuse an undeployable model before training it
    log.info("training the final %s on %d samples, validating on %s", model, len(train),
             val_samples or "a held-out region of the sample")
    trained = train_validated(model, train, val, params=params, search=search, refit=refit,
                              seed=seed, device=device,
                              stages=ProgressFile(progress).stage if progress else None)
    if out_of_fold and trained.calibration is not None:
        trained.calibration = calibrate_across_patients(trained.calibration, out_of_fold,
                                                        patients, gene_list)
    deployment = deployment_of(trained.effective_params)
    record = {"seed": seed, "fold": FINAL, "train": samples, "val": val_samples,
              "genes": gene_list, "features": features}
    return write_model_folder(out, trained, record, partial(write_deployment,
                                                            deployment=deployment))
