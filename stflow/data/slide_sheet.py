"""The slide sheet: a cohort of new H&E slides to predict, one row each, read when the DAG
is built (config ``predict.sheet``), as the sample sheet is for training.

A tab-separated file with the columns

- ``slide`` (``^[A-Za-z0-9_.-]+$``, unique; it names ``slides/{slide}.h5ad``) and ``image``
  (any OpenSlide format, or a plain JPEG/PNG);
- ``um_per_px`` (optional): microns per level-0 pixel; required for a plain image, which
  records no reliable scale; overrides the file's own value for a whole-slide file;
- any further columns (diagnosis, scanner, outcome, ...): kept as the slide's metadata and
  copied into the cohort table, never read by the model.

Columns whose names look like a built-in one (``Slide``, ``mpp``, ``microns_per_pixel``) or
like a column the cohort table computes (``spots``, ``status``) are refused rather than kept
as metadata, since a sheet that meant the built-in would otherwise predict at the wrong
scale without a word. Every problem is reported at once, naming line, slide and column.
Standard library only (the Snakefile reads the sheet while it builds the DAG).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from stflow.data.sheet_table import (
    CellProblem,
    SheetError,
    SheetKind,
    cell_path,
    duplicate_columns,
    name_problems,
    positive_number,
    read_once,
    read_table,
)
from stflow.layout import COHORT

SLIDE_SHEET = SheetKind(
    noun="slide sheet", row="slide", config_key="predict.sheet",
    format="columns slide and image, optional um_per_px, any further columns kept as slide "
           "metadata; see README, 'A cohort of slides'")
REQUIRED = ("slide", "image")
COLUMNS = (*REQUIRED, "um_per_px")
# the cohort table's own columns (stflow.deploy.cohort): a metadata column of the same name
# would be overwritten there
COMPUTED = ("status", "reason", "spots", "tissue_area_mm2", "share_shifted",
            "interval_level", "calibration", "calibrated_on", "um_per_px_from")
# names users give the pixel size: read as um_per_px by nobody, so refused, not kept
SCALE_ALIASES = ("mpp", "mppx", "micronsperpixel", "micronperpixel", "umperpixel", "umpx",
                 "pixelsize", "pixelsizeum", "resolution")
PLAIN_IMAGES = (".jpg", ".jpeg", ".png")  # never carry a usable microns-per-pixel


@dataclass(frozen=True)
class SlideRow:
    """One validated slide: its absolute image path, the µm/px the sheet gives (None: the
    file's own) and the metadata columns as written."""

    slide: str
    image: Path
    um_per_px: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    line: int = 0


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _header_problems(line: int, header: list[str]) -> list[CellProblem]:
    problems = [CellProblem(line, "", c, "column is missing", f"add it: {SLIDE_SHEET.format}",
                        "slide") for c in REQUIRED if c not in header]
    built_in = {_key(c): c for c in COLUMNS} | {alias: "um_per_px" for alias in SCALE_ALIASES}
    for column in header:
        if column in COLUMNS:
            continue
        if _key(column) in built_in:
            meant = built_in[_key(column)]
            problems.append(CellProblem(line, "", column,
                                        f"looks like the built-in column {meant}, "
                                        "which the sheet reads only under that exact name",
                                        f"rename it {meant}, or give it another name to keep "
                                        "it as metadata", "slide"))
        elif _key(column) in {_key(c) for c in COMPUTED}:
            problems.append(CellProblem(line, "", column, "is named like a column the cohort "
                                    f"table computes ({', '.join(COMPUTED)})",
                                    "rename it (e.g. prefix it with the study's name)", "slide"))
    return problems + [CellProblem(p.line, p.name, p.column, p.problem, p.fix, "slide")
                       for p in duplicate_columns(line, header)]


def _row_problems(number: int, row: dict[str, str], base: Path,
                  seen: dict[str, int]) -> list[CellProblem]:
    """Every problem of one row (the slides met so far in ``seen``)."""
    name, found = row.get("slide", ""), name_problems(number, row, SLIDE_SHEET, seen)
    if name == COHORT:
        found.append(("slide", f"{name!r} is the cohort table's own name (slides/{name}.h5ad)",
                      "rename the slide"))
    found += _image_problems(row, base)
    return [CellProblem(number, name, column, problem, fix, "slide")
            for column, problem, fix in found]


def _image_problems(row: dict[str, str], base: Path) -> list[tuple[str, str, str]]:
    """The image cell and its scale, as (column, problem, fix)."""
    out, cell, um_cell = [], row.get("image", ""), row.get("um_per_px", "")
    if um_cell and positive_number(um_cell) is None:
        out.append(("um_per_px", f"{um_cell!r} is not a positive number",
                    "give microns per level-0 pixel of the image, e.g. 0.25 at 40x, 0.5 at 20x"))
    if not cell:
        return out + [("image", "empty", "give the slide's image file")]
    path = cell_path(cell, base)
    if not path.exists():
        out.append(("image", f"{path} does not exist",
                    "correct the path (relative paths are read from the sheet's folder)"))
    elif not path.is_file():
        out.append(("image", f"{path} is not a file", "give the image file itself"))
    if path.suffix.lower() in PLAIN_IMAGES and not um_cell:
        out.append(("um_per_px", f"empty, and {path.name} is a plain image, which records no "
                    "reliable scale", "give microns per level-0 pixel (from the scanner or "
                    "the slide's metadata)"))
    return out


def read_slide_sheet(path: str | Path) -> list[SlideRow]:
    """The sheet's slides, validated; one error listing every problem when any. Read once
    per version of the file."""
    return read_once(path, _read)


def _read(path: Path) -> list[SlideRow]:
    line, header, rows = read_table(path, SLIDE_SHEET)
    problems = _header_problems(line, header)
    if not problems and not rows:
        problems.append(CellProblem(line + 1, "", "-", "no slide rows", "add one row per slide",
                                "slide"))
    seen: dict[str, int] = {}
    if not any(p.column in REQUIRED for p in problems):
        for number, row in rows:
            problems += _row_problems(number, row, path.parent, seen)
    if problems:
        raise SheetError(path, problems, SLIDE_SHEET)
    metadata = [c for c in header if c not in COLUMNS]
    return [SlideRow(slide=row["slide"], image=cell_path(row["image"], path.parent).resolve(),
                     um_per_px=positive_number(row.get("um_per_px") or "nan"),
                     metadata={c: row.get(c, "") for c in metadata}, line=number)
            for number, row in rows]
