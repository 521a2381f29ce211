"""The sample sheet: a user's own sections, one row each, read when the DAG is built.

A tab-separated file (Snakemake-catalogue style) with the columns

- ``sample`` (``^[A-Za-z0-9_.-]+$``, unique) and ``patient`` (folds never split a patient);
- where the data are, either ``spaceranger`` (a Space Ranger ``outs/`` folder, or the
  folder holding ``outs/``) plus ``image`` (the full-resolution H&E Space Ranger was given;
  ``outs/`` does not include it), or ``image`` + ``counts`` + ``positions``:
  ``counts`` a TSV (``.gz`` allowed) of raw counts, spots x genes, the first column the spot
  barcode; ``positions`` a CSV with header ``barcode,x_px,y_px`` (level-0 pixel centres of
  ``image``, x = column);
- ``um_per_px`` (optional for Space Ranger, where it defaults to 55 µm over the scale
  factors' ``spot_diameter_fullres`` (Visium HD: the bin's ``microns_per_pixel``); required
  with ``counts``/``positions``);
- ``bin_um`` (Visium HD folders only, those with ``binned_outputs/``): which binned output
  to read, one of the sizes present; empty means 16 µm when present, else the largest size
  below 112 µm (the patch width: a bin is predicted from the patch around it);
- or ``xenium`` (a Xenium output folder) + ``image`` (the H&E) + ``alignment`` (its
  ``*_imagealignment.csv`` from Xenium Explorer), optional ``unit`` (``transcripts`` or
  ``cells``) and ``bin_um`` (the side of the square bins, any positive µm);
  :mod:`stflow.data.xenium_sheet` checks these rows.

Relative paths are read from the sheet's folder. Every problem of the sheet is collected
and reported at once, naming line, sample and column. Only the standard library is
imported here (the Snakefile reads the sheet while it builds the DAG).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stflow.catalogue import SOURCE_FACTS
from stflow.choices import PATCH_SIZE_UM
from stflow.config import Problem
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
from stflow.data.xenium_sheet import (
    DEFAULT_BIN_UM,
    DEFAULT_UNIT,
    UNIT_FILES,
    bin_um_of,
    xenium_files,
    xenium_problems,
)
from stflow.errors import input_error

REQUIRED = ("sample", "patient")
TABLE_COLUMNS = ("image", "counts", "positions")
COLUMNS = ("sample", "patient", "spaceranger", "xenium", "image", "alignment", "counts",
           "positions", "um_per_px", "unit", "bin_um")
XENIUM_ONLY = ("alignment", "unit")  # columns that only a Xenium row may fill
MATRIX = "filtered_feature_bc_matrix.h5"
POSITION_FILES = ("tissue_positions.csv", "tissue_positions_list.csv")
SCALEFACTORS = "scalefactors_json.json"
VISIUM_SPOT_UM = 55.0  # Visium spots are 55 µm wide: µm/px = 55 / spot_diameter_fullres
# Visium HD: outs/binned_outputs/square_016um/{MATRIX, spatial/HD_POSITIONS, spatial/SCALEFACTORS}
# and outs/FEATURE_SLICE (or {prefix}_feature_slice.h5), as spatialdata_io.visium_hd reads them
BINNED = "binned_outputs"
BIN_FOLDER = re.compile(r"^square_(\d{3})um$")
HD_POSITIONS = "tissue_positions.parquet"
FEATURE_SLICE = "feature_slice.h5"
HD_DEFAULT_BIN_UM = 16
HD_SCALE_KEYS = ("bin_size_um", "spot_diameter_fullres", "microns_per_pixel")  # the reader's
SAMPLE_SHEET = SheetKind(
    noun="sample sheet", row="sample", config_key="dataset.sheet",
    format=("columns sample, patient and either spaceranger (+ image), xenium (+ image + "
            "alignment) or image + counts + positions, optional um_per_px, unit and bin_um; "
            "see README, 'Your own data'"))
FORMAT = SAMPLE_SHEET.format


@dataclass(frozen=True)
class SheetRow:
    """One validated row: absolute paths, and the µm/px the sheet gives (None: from the
    Space Ranger scale factors)."""

    sample: str
    patient: str
    image: Path
    spaceranger: Path | None = None  # the outs/ folder itself
    counts: Path | None = None
    positions: Path | None = None
    um_per_px: float | None = None
    bin_um: float | None = None  # HD rows: the binned output read (a whole number); Xenium
    # rows: the side of the square bins (always set for both)
    xenium: Path | None = None  # the Xenium output folder
    alignment: Path | None = None  # Xenium rows: H&E px -> Xenium px
    unit: str | None = None  # Xenium rows: "transcripts" or "cells" (always set for them)
    line: int = 0

    def to_params(self) -> dict[str, str | float | None]:
        """The row as plain values (a Snakemake param: a changed row reruns its ingest)."""
        return {"sample": self.sample, "patient": self.patient, "image": str(self.image),
                "spaceranger": str(self.spaceranger) if self.spaceranger else None,
                "counts": str(self.counts) if self.counts else None,
                "positions": str(self.positions) if self.positions else None,
                "um_per_px": self.um_per_px,
                # only HD and Xenium rows carry these: the params of Visium rows, and so their
                # ingests, stay as they were
                **({"bin_um": self.bin_um} if self.bin_um is not None else {}),
                **({"xenium": str(self.xenium), "alignment": str(self.alignment),
                    "unit": self.unit} if self.xenium is not None else {})}

    def files(self) -> list[Path]:
        """The files ingest reads for this row (a newer one reruns the sample's ingest)."""
        if self.xenium is not None and self.alignment is not None and self.unit is not None:
            return [self.image, self.alignment, *xenium_files(self.xenium, self.unit)]
        if self.spaceranger is not None and self.bin_um is not None:
            found = [feature_slice(self.spaceranger), *hd_bin_files(self.spaceranger, self.bin_um)]
            return [self.image] + [p for p in found if p is not None]
        if self.spaceranger is not None:
            found = [self.spaceranger / MATRIX, positions_file(self.spaceranger),
                     self.spaceranger / "spatial" / SCALEFACTORS]
            return [self.image] + [p for p in found if p is not None]
        return [p for p in (self.image, self.counts, self.positions) if p is not None]

    @classmethod
    def from_params(cls, params: dict) -> SheetRow:
        """The row back from :meth:`to_params`."""
        def path(key: str) -> Path | None:
            return Path(params[key]) if params.get(key) else None

        um, bin_um = params.get("um_per_px"), params.get("bin_um")
        if bin_um is not None:  # HD bins name folders by whole µm
            bin_um = float(bin_um) if params.get("xenium") else int(bin_um)
        return cls(sample=str(params["sample"]), patient=str(params["patient"]),
                   image=Path(params["image"]), spaceranger=path("spaceranger"),
                   counts=path("counts"), positions=path("positions"),
                   um_per_px=None if um is None else float(um), bin_um=bin_um,
                   xenium=path("xenium"), alignment=path("alignment"),
                   unit=params.get("unit"))


def find_outs(folder: Path) -> Path | None:
    """The Space Ranger ``outs/`` folder: ``folder`` itself or ``folder/outs`` (Visium: with
    the matrix; Visium HD: with ``binned_outputs/``)."""
    for candidate in (folder, folder / "outs"):
        if (candidate / MATRIX).is_file() or is_hd(candidate):
            return candidate
    return None


def is_hd(outs: Path) -> bool:
    """A Visium HD ``outs/`` folder: its counts are per bin size under ``binned_outputs/``."""
    return (outs / BINNED).is_dir()


def hd_bin_sizes(outs: Path) -> list[int]:
    """The bin sizes (µm) of the ``square_NNNum`` folders of a Visium HD folder, ascending."""
    try:
        names = [p.name for p in (outs / BINNED).iterdir() if p.is_dir()]
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(BIN_FOLDER.match, names) if m)


def default_bin_um(sizes: list[int]) -> int | None:
    """16 µm when present, else the largest size below the 112 µm patch (None: none is)."""
    if HD_DEFAULT_BIN_UM in sizes:
        return HD_DEFAULT_BIN_UM
    return max((s for s in sizes if s < PATCH_SIZE_UM), default=None)


def hd_bin_folder(outs: Path, bin_um: int) -> Path:
    """``binned_outputs/square_016um`` for 16 µm (three digits, as Space Ranger names them)."""
    return outs / BINNED / f"square_{bin_um:03d}um"


def hd_bin_files(outs: Path, bin_um: int) -> list[Path]:
    """The files of one bin size the reader needs: matrix, positions, scale factors."""
    folder = hd_bin_folder(outs, bin_um)
    return [folder / MATRIX, folder / "spatial" / HD_POSITIONS, folder / "spatial" / SCALEFACTORS]


def feature_slice(outs: Path) -> Path | None:
    """``feature_slice.h5`` (or the one ``{prefix}_feature_slice.h5``): spatialdata-io reads
    the slide layout from it and refuses a folder without it."""
    if (outs / FEATURE_SLICE).is_file():
        return outs / FEATURE_SLICE
    found = sorted(outs.glob(f"*_{FEATURE_SLICE}"))
    return found[0] if len(found) == 1 else None


def hd_scale_factors(outs: Path, bin_um: int) -> dict[str, float] | None:
    """The bin's positive :data:`HD_SCALE_KEYS` (None: unreadable or any missing)."""
    try:
        factors = json.loads((hd_bin_folder(outs, bin_um) / "spatial" / SCALEFACTORS).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(factors, dict):
        return None
    values = {key: factors.get(key) for key in HD_SCALE_KEYS}
    if any(isinstance(v, bool) or not isinstance(v, int | float) or not v > 0
           for v in values.values()):
        return None
    return {key: float(v) for key, v in values.items()}


def _bin_um(cell: str) -> int | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return int(value) if value.is_integer() and value > 0 else None


def _hd_problems(outs: Path, bin_cell: str) -> list[tuple[str, str, str]]:
    """What a Visium HD folder lacks for the chosen bin size, as (column, problem, fix)."""
    sizes = hd_bin_sizes(outs)
    if not sizes:
        return [("spaceranger", f"{outs}/{BINNED} (Visium HD) holds no square_NNNum folder",
                 f"copy the whole {BINNED} folder Space Ranger wrote")]
    listed = ", ".join(str(s) for s in sizes)
    if bin_cell:
        bin_um = _bin_um(bin_cell)
        if bin_um is None:
            return [("bin_um", f"{bin_cell!r} is not a whole number of µm",
                     f"give one of the bin sizes of {outs}/{BINNED}: {listed}")]
        if bin_um not in sizes:
            return [("bin_um", f"{outs}/{BINNED} has no {bin_um} µm bins (it has {listed} µm)",
                     f"give one of {listed}, or copy {hd_bin_folder(outs, bin_um).name} "
                     "from Space Ranger")]
    else:
        bin_um = default_bin_um(sizes)
        if bin_um is None:
            return [("bin_um", f"empty, and {outs}/{BINNED} has no bin size below "
                     f"{PATCH_SIZE_UM} µm (it has {listed} µm)", f"give one of {listed}")]
    missing = [p for p in hd_bin_files(outs, bin_um) if not p.is_file()]
    names = [str(p.relative_to(outs)) for p in missing]
    if feature_slice(outs) is None:
        names.insert(0, f"{FEATURE_SLICE} (or one {{prefix}}_{FEATURE_SLICE})")
    if names:
        return [("spaceranger", f"{outs} is a Visium HD output that lacks {names} "
                 f"(read for its {bin_um} µm bins)", "copy these files from the outs/ "
                 "folder Space Ranger wrote (spatialdata-io reads them)")]
    if hd_scale_factors(outs, bin_um) is None:
        return [("spaceranger", f"{hd_bin_files(outs, bin_um)[2]} lacks a positive "
                 f"{' or '.join(HD_SCALE_KEYS)}", "use the scale factors Space Ranger "
                 "wrote (spatialdata-io checks them; um_per_px only overrides the µm/px)")]
    return []


def positions_file(outs: Path) -> Path | None:
    """The tissue positions CSV (Space Ranger >= 2 or older), if there is one."""
    return next((outs / "spatial" / name for name in POSITION_FILES
                 if (outs / "spatial" / name).is_file()), None)


def spot_diameter_px(outs: Path) -> float | None:
    """``spot_diameter_fullres`` of the scale factors, None where absent or not positive."""
    try:
        factors = json.loads((outs / "spatial" / SCALEFACTORS).read_text())
    except (OSError, ValueError):
        return None
    diameter = factors.get("spot_diameter_fullres") if isinstance(factors, dict) else None
    if isinstance(diameter, bool) or not isinstance(diameter, int | float) or not diameter > 0:
        return None
    return float(diameter)


def _spaceranger_problems(folder: Path, has_um_per_px: bool) -> list[tuple[str, str]]:
    """What a Visium (not HD) Space Ranger folder lacks, as (problem, fix) pairs."""
    outs = find_outs(folder)
    if outs is None:
        return [(f"no {MATRIX} in {folder} or {folder}/outs",
                 "give the Space Ranger outs/ folder of this sample")]
    problems = []
    if positions_file(outs) is None:
        problems.append((f"{outs}/spatial has no {' or '.join(POSITION_FILES)}",
                         "copy the whole outs/spatial folder Space Ranger wrote"))
    if not (outs / "spatial" / SCALEFACTORS).is_file():
        problems.append((f"{outs}/spatial has no {SCALEFACTORS}",
                         "copy the whole outs/spatial folder Space Ranger wrote"))
    elif not has_um_per_px and spot_diameter_px(outs) is None:
        problems.append((f"{outs}/spatial/{SCALEFACTORS} has no positive "
                         "spot_diameter_fullres, so µm/px is unknown",
                         "give um_per_px, or the scale factors Space Ranger wrote"))
    return problems


def _header_problems(line: int, header: list[str]) -> list[CellProblem]:
    problems = [CellProblem(line, "", c, "column is missing", f"add it: {FORMAT}")
                for c in REQUIRED if c not in header]
    problems += [CellProblem(line, "", c, "unknown column", f"use only {list(COLUMNS)}")
                 for c in header if c not in COLUMNS]
    problems += duplicate_columns(line, header)
    if ("spaceranger" not in header and "xenium" not in header
            and not all(c in header for c in TABLE_COLUMNS)):
        missing = [c for c in TABLE_COLUMNS if c not in header]
        problems.append(CellProblem(line, "", "spaceranger", "column is missing, and so are "
                                f"{missing} and xenium: the sheet does not say where the data "
                                "are", "add a spaceranger column (Space Ranger outs/ folders), "
                                "a xenium column (Xenium output folders, with image and "
                                "alignment) or the columns image, counts and positions"))
    return problems


def _row_problems(number: int, row: dict[str, str], base: Path,
                  seen: dict[str, int]) -> list[CellProblem]:
    """Every problem of one row (the samples met so far in ``seen``)."""
    found = _name_problems(number, row, seen)
    um_cell = row.get("um_per_px", "")
    um = positive_number(um_cell) if um_cell else None
    if um_cell and um is None:
        found.append(("um_per_px", f"{um_cell!r} is not a positive number",
                      "give microns per level-0 pixel of the image, e.g. 0.5"))
    found += (_xenium_row_problems(row, base) if row.get("xenium")
              else _spot_row_problems(row, base, um))
    return [CellProblem(number, row.get("sample", ""), column, problem, fix)
            for column, problem, fix in found]


def _name_problems(number: int, row: dict[str, str], seen: dict[str, int]
                   ) -> list[tuple[str, str, str]]:
    """Problems of a row's cells count, sample name (recorded in ``seen`` when new) and
    patient, as (column, problem, fix)."""
    out = name_problems(number, row, SAMPLE_SHEET, seen)
    if not row.get("patient"):
        out.append(("patient", "empty: without a patient, folds could put two sections of "
                    "one patient on both sides of a split", "give the patient id of this "
                    "section"))
    return out


def _spot_row_problems(row: dict[str, str], base: Path, um: float | None
                       ) -> list[tuple[str, str, str]]:
    """Every data problem of a row that is not a Xenium folder (Space Ranger, or image +
    counts + positions), as (column, problem, fix)."""
    out = [(column, f"{row[column]!r} given for a row that is not a Xenium folder",
            f"remove it: {column} applies to rows with a xenium folder")
           for column in XENIUM_ONLY if row.get(column)]
    spaceranger, table = row.get("spaceranger", ""), [row.get(c, "") for c in TABLE_COLUMNS]
    if spaceranger and (row.get("counts") or row.get("positions")):
        out.append(("spaceranger", "given together with counts/positions",
                    "give either a Space Ranger folder or counts + positions, not both"))
    elif not spaceranger and not all(table):
        missing = [c for c, v in zip(TABLE_COLUMNS, table, strict=True) if not v]
        out.append(("spaceranger" if not any(table) else missing[0],
                    f"no data: spaceranger and xenium are empty and so are {missing}",
                    "give a Space Ranger outs/ folder (spaceranger + image), a Xenium output "
                    "folder (xenium + image + alignment), or image + counts + positions"))
    out += _path_problems(row, base, um)
    if row.get("bin_um") and _not_hd(spaceranger, base):
        out.append(("bin_um", f"{row['bin_um']!r} given for a row that is not a Visium HD "
                    "folder", f"remove it: bin_um chooses the binned output ({BINNED}/"
                    "square_NNNum) of a Visium HD outs/ folder, or the bin size of a Xenium "
                    "row"))
    if not spaceranger and row.get("image") and not row.get("um_per_px"):
        out.append(("um_per_px", "empty, and an image with counts + positions does not say "
                    "its µm/px", "give microns per level-0 pixel of the image (from the "
                    "scanner or the slide metadata)"))
    if spaceranger and not row.get("image"):
        out.append(("image", "empty: a Space Ranger outs/ folder does not include the "
                    "full-resolution H&E", "give the image Space Ranger was run on (the one "
                    "its pxl_*_in_fullres positions refer to)"))
    return out


def _path_problems(row: dict[str, str], base: Path, um: float | None
                   ) -> list[tuple[str, str, str]]:
    """Problems of the row's Space Ranger folder and table files: missing, of the wrong
    kind, or (a Space Ranger folder) incomplete, as (column, problem, fix)."""
    out = []
    for column in ("spaceranger", *TABLE_COLUMNS):
        if not row.get(column):
            continue
        path = cell_path(row[column], base)
        if not path.exists():
            out.append((column, f"{path} does not exist", "correct the path (relative paths "
                        "are read from the sheet's folder)"))
        elif column == "spaceranger":
            if not path.is_dir():
                out.append((column, f"{path} is not a folder",
                            "give the Space Ranger outs/ folder"))
            elif (outs := find_outs(path)) is not None and is_hd(outs):
                out += _hd_problems(outs, row.get("bin_um", ""))
            else:
                out += [(column, problem, fix)
                        for problem, fix in _spaceranger_problems(path, um is not None)]
        elif not path.is_file():
            out.append((column, f"{path} is not a file", "give the file itself"))
    return out


def _xenium_row_problems(row: dict[str, str], base: Path) -> list[tuple[str, str, str]]:
    """Every problem of a row with a ``xenium`` folder, as (column, problem, fix)."""
    out = [(c, "given together with xenium", "give one source of data per row: a Xenium "
            "folder, a Space Ranger folder or counts + positions")
           for c in ("spaceranger", "counts", "positions") if row.get(c)]
    if row.get("um_per_px"):
        out.append(("um_per_px", "given for a Xenium row, whose alignment fixes the H&E's "
                    "µm/px", "remove it (the alignment's scale times experiment.xenium's "
                    "pixel_size is used)"))
    unit = row.get("unit") or DEFAULT_UNIT
    if unit not in UNIT_FILES:
        out.append(("unit", f"{unit!r} is not a unit", f"give one of {list(UNIT_FILES)} "
                    f"(empty: {DEFAULT_UNIT})"))
    paths: dict[str, Path | None] = {}
    for column, needed in (("xenium", ""), ("image", "the H&E the alignment was made on"),
                           ("alignment", "the *_imagealignment.csv Xenium Explorer exported "
                            "for this H&E")):
        paths[column] = cell_path(row[column], base) if row.get(column) else None
        if paths[column] is None:
            out.append((column, "empty: a Xenium row places its bins on the H&E through "
                        "the alignment", f"give {needed}"))
        elif not paths[column].exists():
            out.append((column, f"{paths[column]} does not exist", "correct the path "
                        "(relative paths are read from the sheet's folder)"))
            paths[column] = None
        elif column != "xenium" and not paths[column].is_file():
            out.append((column, f"{paths[column]} is not a file", "give the file itself"))
            paths[column] = None
    if paths["xenium"] is not None and unit in UNIT_FILES:
        out += xenium_problems(paths["xenium"], paths["image"], paths["alignment"], unit,
                               row.get("bin_um", ""))
    elif row.get("bin_um") and bin_um_of(row["bin_um"]) is None:
        out.append(("bin_um", f"{row['bin_um']!r} is not a positive number of µm",
                    f"give the bin side in µm (empty: {DEFAULT_BIN_UM:g})"))
    return out


def _not_hd(spaceranger: str, base: Path) -> bool:
    """Whether a spaceranger cell is empty or names an existing folder that is not Visium HD
    (a missing path is refused as such, not twice)."""
    if not spaceranger:
        return True
    path = cell_path(spaceranger, base)
    outs = find_outs(path) if path.is_dir() else None
    return path.exists() and not (outs is not None and is_hd(outs))


def read_sheet(path: str | Path) -> list[SheetRow]:
    """The sheet's rows, validated; one error listing every problem when any. Read once per
    version of the file."""
    return read_once(path, _read_sheet)


def _read_sheet(path: Path) -> list[SheetRow]:
    line, header, rows = read_table(path, SAMPLE_SHEET)
    problems = _header_problems(line, header)
    if not problems and not rows:
        problems.append(CellProblem(line + 1, "", "-", "no sample rows", "add one row per section"))
    seen: dict[str, int] = {}
    if not any(p.column in REQUIRED for p in problems):
        for number, row in rows:
            problems += _row_problems(number, row, path.parent, seen)
    if problems:
        raise SheetError(path, problems, SAMPLE_SHEET)
    return [_sheet_row(number, row, path.parent) for number, row in rows]


def _sheet_row(number: int, row: dict[str, str], base: Path) -> SheetRow:
    def path_of(column: str) -> Path | None:
        return cell_path(row[column], base).resolve() if row.get(column) else None

    spaceranger = path_of("spaceranger")
    outs = find_outs(spaceranger) if spaceranger else None
    bin_um: float | None = None
    if outs is not None and is_hd(outs):
        bin_um = _bin_um(row.get("bin_um") or "") or default_bin_um(hd_bin_sizes(outs))
    xenium = path_of("xenium")
    if xenium is not None:
        bin_um = bin_um_of(row.get("bin_um") or "") or DEFAULT_BIN_UM
    return SheetRow(sample=row["sample"], patient=row["patient"], image=path_of("image"),
                    spaceranger=outs, counts=path_of("counts"), positions=path_of("positions"),
                    um_per_px=positive_number(row.get("um_per_px") or "nan"), bin_um=bin_um,
                    xenium=xenium, alignment=path_of("alignment"),
                    unit=(row.get("unit") or DEFAULT_UNIT) if xenium is not None else None,
                    line=number)


def sheet_samples(path: str | Path, wanted: list[str] | None = None) -> list[str]:
    """Sample names in sheet order (only ``wanted`` when given; one not in the sheet is
    refused)."""
    names = [row.sample for row in read_sheet(path)]
    if wanted:
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise input_error(path, f"no rows for samples {unknown} (it has {names})",
                              "add their rows, or set dataset.samples: null to run every row")
        return [name for name in names if name in wanted]
    return names


def sheet_patients(path: str | Path) -> dict[str, str]:
    """sample -> patient."""
    return {row.sample: row.patient for row in read_sheet(path)}


def dataset_problems(dataset: Mapping[str, Any]) -> list[Problem]:
    """The config's ``dataset`` entry and its sheet agree (source sheet needs dataset.sheet,
    and only then; the sheet replaces mirror, patients and images), and every problem of
    the sheet itself, each as a config problem listed with the others before any job."""
    sheet, source = dataset.get("sheet"), dataset.get("source")
    from_sheet = [name for name, facts in SOURCE_FACTS.items() if facts.samples == "sample_sheet"]
    if sheet and source not in from_sheet:
        return [Problem("dataset.sheet", sheet, f"given with source {source!r}",
                              f"set dataset.source: {' or '.join(from_sheet)}, or remove "
                              "dataset.sheet")]
    if source not in from_sheet:
        return []
    if not sheet:
        return [Problem("dataset.sheet", None, "source sheet needs a sample sheet",
                              "give dataset.sheet: path/to/samples.tsv")]
    problems = [Problem(f"dataset.{key}", dataset[key], "set beside dataset.sheet",
                              "remove it: the sheet's columns give the data, the patient "
                              "and the image of each sample")
                for key in ("mirror", "patients", "images") if dataset.get(key)]
    try:
        read_sheet(sheet)
    except SheetError as err:
        problems += [Problem(f"dataset.sheet {sheet}", sheet, str(p).partition(". Fix: ")[0],
                                   p.fix) for p in err.problems]
    return problems


def sheet_row(path: str | Path, sample: str) -> SheetRow:
    """The row of ``sample``; refused by name when the sheet has no such sample."""
    rows = {row.sample: row for row in read_sheet(path)}
    if sample not in rows:
        raise input_error(path, f"no sample {sample!r} (it has {sorted(rows)})",
                          "add a row for it, or drop it from the run")
    return rows[sample]


def write_resolved(rows: list[SheetRow], out: Path) -> None:
    """The sheet with absolute paths (``raw/sheet.tsv``), so that it reads the same from any
    folder; written in place by the caller's atomic output."""
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row.sample, row.patient, row.spaceranger or "", row.xenium or "",
                             row.image, row.alignment or "", row.counts or "",
                             row.positions or "",
                             "" if row.um_per_px is None else repr(row.um_per_px),
                             row.unit or "", "" if row.bin_um is None else row.bin_um])
