"""Shared fixtures and the test classes. Tests that need ../shared data skip locally with a
message, never in CI.

Markers (registered in pyproject.toml; `make test-fast` deselects the first three, `make test`
runs everything):
- ``workflow``: spawns Snakemake or reads the session's tiny pipeline run (``tiny_run``);
- ``slurm``: needs the private Slurm cluster (root, slurm-wlm, munge);
- ``data``: reads the her2st mirror in ../shared;
- ``slow``: any other test over about 5 s.
A test is given ``workflow`` / ``data`` here by the fixtures it uses (directly or through
another fixture); a test that spawns Snakemake itself carries ``workflow`` explicitly, and
``workflow_fixtures.snakemake`` refuses to run for a test that does not.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import workflow_fixtures
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


# fixture -> the marker every test that uses it (directly or through a fixture) carries
MARKED_FIXTURES = {"tiny_run": "workflow", "her2st_mirror": "data"}


def pytest_collection_modifyitems(config, items):
    """Mark each test by the fixtures it needs, so a new test is classified without thought."""
    for item in items:
        for fixture in MARKED_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(MARKED_FIXTURES[fixture])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Let only ``workflow`` tests (and their fixtures) spawn Snakemake: an unmarked one would
    slow the fast loop unseen, so it fails saying which marker it needs."""
    workflow_fixtures.SPAWN_ALLOWED = item.get_closest_marker("workflow") is not None
