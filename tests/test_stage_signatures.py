"""Every stage function takes its settings by name: at most two positional inputs, the rest
keyword-only, so the rule scripts and the CLI cannot shift one setting into another's place."""

from __future__ import annotations

import importlib
import inspect

import pytest

STAGES = [
    "stflow.data.download:download_source",
    "stflow.data.ingest:ingest_sample",
    "stflow.data.ingest:write_samples_tsv",
    "stflow.data.splits:write_splits",
    "stflow.data.genes:select_target_genes",
    "stflow.data.genes:select_fold_genes",
    "stflow.data.patches:patches_from_h5ad",
    "stflow.data.patches:extract_patches",
    "stflow.data.embedding:embed",
    "stflow.data.graph:write_graph",
    "stflow.crossval.train:train_fold",
    "stflow.crossval.predict:predict_fold",
    "stflow.evaluation.coverage:write_coverage",
    "stflow.evaluation.fold_scores:write_fold_scores",
    "stflow.evaluation.summary:write_summary",
    "stflow.evaluation.paper_tables:write_paper_tables_of_run",
    "stflow.evaluation.figures:make_figures",
    "stflow.deploy.final_model:train_final",
    "stflow.deploy.predict_slide:predict_slides",
]


@pytest.mark.parametrize("target", STAGES)
def test_a_stage_takes_at_most_two_positional_inputs(target):
    module, name = target.split(":")
    parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    positional = [p.name for p in parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) <= 2, f"{target} takes {positional} by position"
