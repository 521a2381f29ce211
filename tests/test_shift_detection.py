"""The shift-detection benchmark's measure: per-slide shares flagged and their AUROC."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "shift_detection.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("shift_detection", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_auroc_counts_ties_half_and_orders_by_share(bench):
    assert bench.auroc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert bench.auroc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert bench.auroc(np.array([0.2, 0.2]), np.array([0.2, 0.2])) == 0.5


def test_shifted_slides_are_told_from_new_slides_like_the_training_ones(bench):
    rng = np.random.default_rng(0)
    features = lambda n, shift=0.0: rng.normal(size=(n, 12)) + shift  # noqa: E731
    slides = {f"id{i}": features(150) for i in range(4)}
    slides.update({f"ood{i}": features(150, 1.5 + i) for i in range(3)})
    result = bench.detect(features(1500), features(800), slides,
                          {name: name.startswith("ood") for name in slides})
    assert result.auroc == 1.0
    assert max(result.shares[f"id{i}"] for i in range(4)) < 0.15
    assert min(result.shares[f"ood{i}"] for i in range(3)) > 0.5
    assert result.exchangeable_share <= 0.1
    assert result.spots["id0"] == 150


def test_a_stain_or_scanner_change_keeps_the_window_and_changes_its_look(bench):
    window = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    for transform in bench.TRANSFORMS.values():
        out = transform(window)
        assert out.shape == window.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - window).mean() > 5
