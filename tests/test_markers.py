"""The test classes of the fast loop: registered, strict, and all left out by `make test-fast`
(and none by `make test`), so a new marker cannot slip into the fast loop unseen."""

from __future__ import annotations

import tomllib
from pathlib import Path

from conftest import MARKED_FIXTURES

REPO = Path(__file__).resolve().parents[1]
CLASSES = {"workflow", "slurm", "data", "slow"}


def pytest_options() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


def make_recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"{target}:"))) + 1
    recipe = []
    for line in lines[start:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_the_markers_are_registered_and_strict():
    options = pytest_options()
    registered = {line.split(":")[0] for line in options["markers"]}
    assert registered == CLASSES
    assert "--strict-markers" in options["addopts"].split()
    assert set(MARKED_FIXTURES.values()) <= registered


def test_the_fast_loop_leaves_out_every_class_and_the_whole_suite_none():
    fast = next(line for line in (REPO / "Makefile").read_text().splitlines()
                if line.startswith("FAST :="))
    assert {f"not {name}" for name in CLASSES} == {
        part.strip() for part in fast.removeprefix("FAST :=").split(" and ")}
    assert '-m "$(FAST)"' in make_recipe("test-fast")[-1]
    assert not [line for line in make_recipe("test") if " -m " in line]
