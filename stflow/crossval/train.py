"""The train stage: one model fitted on one fold (with its search, refit and interval
calibration), written with its history, parameters and deployment record.

It joins the upstream artifacts (splits, genes, ingested counts, features, graph) into
:class:`stflow.data.dataset.Slide` objects and hands them to
:func:`stflow.training.fit.train_validated`, the path the deployable model takes too, so
every model — STFlow, its ablations, the baselines — is trained and written the same way.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

from stflow.crossval.inputs import calibrating_of, calibration_scope_of, read_fold
from stflow.data.loading import features_identity, load_slides, read_genes
from stflow.models.progress import ProgressFile
from stflow.records.deployment import describe_training, write_deployment
from stflow.training.fit import check_request, train_validated
from stflow.training.folder import write_model_folder

log = logging.getLogger(__name__)


def train_fold(*, splits: str | Path, fold: str, genes: str | Path, st_dir: str | Path,
               features_dir: str | Path, graph_dir: str | Path | None, model: str,
               out: str | Path, params: dict[str, Any] | None = None, seed: int = 0,
               device: str = "auto", search: dict[str, Any] | None = None,
               refit: bool = False, progress: str | Path | None = None) -> Path:
    """Fit ``model`` on the fold's train (+val) slides and write its folder atomically.

    ``device`` is where to run, not a model parameter: it goes to the estimators that take
    one and is not recorded in params.json. ``search`` (``{trials, space}``) first searches
    the space on the fold's validation split (:mod:`stflow.models.search`); the chosen values and
    every trial are written next to the model (``search.json``, ``search.tsv``).
    ``refit`` then retrains the selected model on train + validation with what validation
    chose fixed (STFlow: the epoch count; ridge: alpha), for every model that selects
    something; models that select nothing already fit on train + validation.
    ``progress``: a TSV to which every epoch's row is appended as it ends (the folder
    itself appears only when training is done).
    """
    parts = read_fold(splits, fold)
    gene_list = read_genes(genes)
    check_request(model, params, search, seed, device)
    features = features_identity(features_dir, parts["train"] + parts["val"])
    train = load_slides(parts["train"], gene_list, st_dir, features_dir, graph_dir)
    val = load_slides(parts["val"], gene_list, st_dir, features_dir, graph_dir)
    log.info("training %s on %s: %d train, %d val slides", model, fold, len(train), len(val))
    stages = ProgressFile(progress).stage if progress is not None else None
    trained = train_validated(model, train, val, params=params, search=search, refit=refit,
                              seed=seed, device=device, stages=stages,
                              scope=calibration_scope_of(splits, fold),
                              calibrating=calibrating_of(splits, fold))
    # the deployment record holds the settings the kept model was trained with
    deployment = describe_training(model, gene_list, features, train + val, features_dir,
                                   graph_dir, trained.effective_params, fold)
    record = {"seed": seed, "fold": fold, "train": parts["train"], "val": parts["val"],
              "genes": gene_list, "features": features}
    return write_model_folder(out, trained, record, partial(write_deployment,
                                                            deployment=deployment))
