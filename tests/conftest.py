"""Shared fixtures. Tests that need ../shared data skip locally with a message, never in CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from workflow_fixtures import tiny_run_fixture  # noqa: F401  (one tiny run for all modules)

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STFLOW_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_path(path: Path, how: str) -> Path:
    """Return ``path``; where it is missing, fail in CI and skip (saying how) elsewhere."""
    if path.exists():
        return path
    message = f"{path} is missing: {how}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def her2st_mirror() -> Path:
    """The real her2st sections (../shared/data/her2st), laid out as the GitHub repository."""
    return require_path(SHARED / "data" / "her2st",
                        "put the her2st mirror at ../shared/data/her2st or set STFLOW_SHARED")
