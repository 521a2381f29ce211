"""The slide sheet: a cohort of new slides, one row each, checked before any job like the
sample sheet (every problem at once, naming line, column and fix), its further columns kept
as metadata."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from PIL import Image
from workflow_fixtures import REPO, TINY

from stflow.config import Problem
from stflow.config_checks import slide_sheet_problems, with_defaults
from stflow.data.sheet_table import SheetError
from stflow.data.slide_sheet import read_slide_sheet
from stflow.schema import load_schema
from stflow.study import Study


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    for name in ("a.jpg", "b.png"):
        Image.new("RGB", (64, 48), (230, 200, 220)).save(tmp_path / name)
    (tmp_path / "c.svs").write_bytes(b"not really a slide")  # readability is the job's check
    return tmp_path


def test_a_sheet_gives_each_slide_its_image_scale_and_metadata(images):
    sheet = write(images / "slides.tsv", "# a cohort", "slide\timage\tum_per_px\tdiagnosis\tage",
                  "A1\ta.jpg\t0.5\tHER2+\t61", "B2\tb.png\t0.25\tTNBC\t", "C3\tc.svs\t\tHER2+\t47")
    rows = read_slide_sheet(sheet)
    assert [r.slide for r in rows] == ["A1", "B2", "C3"]
    assert rows[0].image == (images / "a.jpg").resolve() and rows[0].um_per_px == 0.5
    assert rows[2].um_per_px is None  # a whole-slide file: its own scale
    assert rows[1].metadata == {"diagnosis": "TNBC", "age": ""}
    assert rows[0].line == 3


def test_every_problem_is_refused_at_once_naming_line_column_and_fix(images):
    sheet = write(images / "slides.tsv",
                  "slide\timage\tum_per_px\tMPP\tspots",
                  "A1\tmissing.svs\t\t\t",
                  "A1\ta.jpg\t\t\t",
                  "cohort\tb.png\t-1\t\t")
    with pytest.raises(SheetError) as caught:
        read_slide_sheet(sheet)
    found = {(p.line, p.column): str(p) for p in caught.value.problems}
    assert "does not exist" in found[(2, "image")] and "Fix: correct the path" in found[(2, "image")]
    assert "already on line 2" in found[(3, "slide")]
    assert "plain image" in found[(3, "um_per_px")] and "Fix: give microns" in found[(3, "um_per_px")]
    assert "cohort table's own name" in found[(4, "slide")]
    assert "not a positive number" in found[(4, "um_per_px")]
    assert "looks like the built-in column um_per_px" in found[(1, "MPP")]
    assert "named like a column the cohort table computes" in found[(1, "spots")]
    assert str(sheet) in str(caught.value) and "slide sheet" in str(caught.value)


def test_a_sheet_without_its_required_columns_says_which(images):
    with pytest.raises(SheetError, match=r"column image: column is missing"):
        read_slide_sheet(write(images / "slides.tsv", "slide\tpath", "A1\ta.jpg"))
    with pytest.raises(SheetError, match="slide sheet does not exist.*predict.sheet"):
        read_slide_sheet(images / "nowhere.tsv")


def test_the_config_check_lists_the_sheets_problems_and_slides_named_twice(images):
    sheet = write(images / "slides.tsv", "slide\timage\tum_per_px", "A1\ta.jpg\t0.5")
    config = {"predict": {"sheet": str(sheet), "slides": {"A1": "other.svs"}}}
    assert [p.key for p in slide_sheet_problems(config)] == ["predict.slides"]
    bad = write(images / "bad.tsv", "slide\timage", "A1\tb.png")
    problems = slide_sheet_problems({"predict": {"sheet": str(bad), "slides": {}}})
    assert len(problems) == 1 and isinstance(problems[0], Problem)
    assert "line 2 (slide A1), column um_per_px" in str(problems[0])


def test_the_study_predicts_the_mapping_and_the_sheet_and_builds_one_cohort(images):
    sheet = write(images / "slides.tsv", "slide\timage\tum_per_px\tgrade",
                  "A1\ta.jpg\t0.5\t2", "B2\tb.png\t0.25\t3")
    config = {**copy.deepcopy(TINY), "predict": {"sheet": str(sheet),
                                                 "slides": {"new": str(images / "c.svs")}}}
    study = Study(with_defaults(config, load_schema(REPO / "config" / "schema.yaml")))
    assert list(study.slides()) == ["new", "A1", "B2"]
    assert study.slide_file("A1") == str((images / "a.jpg").resolve())
    assert study.slide_um_per_px("B2") == 0.25 and study.slide_um_per_px("new") is None
    assert study.slide_metadata()["B2"] == {"grade": "3"}
    targets = study.slide_targets()
    assert sum(t.endswith(".h5ad") for t in targets) == 4  # three slides and the cohort
    assert any(t.endswith("slides/checks/B2.json") for t in targets)
    assert any(t.endswith("slides/cohort.tsv") for t in targets)
