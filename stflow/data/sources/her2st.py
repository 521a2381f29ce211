"""The her2st source: legacy ST sections of HER2-positive breast cancer (Andersson et al. 2021).

Layout of the public repository almaan/her2st (pinned commit), kept unchanged in ``raw/``:
``data/ST-cnts/{S}.tsv.gz`` (spots x genes, spot id "XxY"), ``data/ST-spotfiles/{S}_selection.tsv``
(array x, y and pixel_x, pixel_y) and ``data/ST-imgs/{patient}/{S}/*.jpg``. The synthetic
simulator writes the same layout, so this reader serves both.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from stflow.data.sources.fetch import place_files, read_checksums
from stflow.data.sources.ingest_form import IngestedSample
from stflow.data.sources.options import IngestOptions, refuse_known_facts
from stflow.errors import input_error

log = logging.getLogger(__name__)

REPOSITORY = "almaan/her2st"
# 85df741 in full: raw.githubusercontent.com is given the full hash so that no ref resolution
# (branch, tag or abbreviated commit) is involved.
COMMIT = "85df7411b987a7dec3feff9718b869a7a82091ec"
RAW_URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/{{path}}"
GRID_UM = 200.0  # legacy ST: 100 µm spots on a 200 µm centre-to-centre grid
AXIS_TOLERANCE = 0.05  # x and y pixel pitch may differ by this fraction before we refuse

COUNTS_DIR = Path("data/ST-cnts")
SPOTS_DIR = Path("data/ST-spotfiles")
IMAGES_DIR = Path("data/ST-imgs")


def published_checksums() -> dict[str, str]:
    """The committed SHA-256 list of the published files (package data)."""
    with resources.as_file(resources.files("stflow.data.sources") / "her2st_sha256.tsv") as path:
        return read_checksums(path)


def files_of_samples(checksums: dict[str, str], samples: list[str] | None) -> dict[str, str]:
    """Restrict a checksum list to the files of ``samples`` (all when ``None``)."""
    if not samples:
        return dict(checksums)
    known = {Path(rel).name.split(".")[0] for rel in checksums if rel.startswith(str(COUNTS_DIR))}
    unknown = sorted(set(samples) - known)
    if unknown:
        raise input_error("--samples", f"unknown sections {unknown}",
                          f"choose among {sorted(known)}")
    pattern = re.compile(r"^data/(ST-cnts/(?P<a>[^/.]+)\.tsv\.gz|ST-spotfiles/(?P<b>[^/]+)"
                         r"_selection\.tsv|ST-imgs/[^/]+/(?P<c>[^/]+)/.+)$")
    chosen = {}
    for rel, digest in checksums.items():
        match = pattern.match(rel)
        if match and (match["a"] or match["b"] or match["c"]) in samples:
            chosen[rel] = digest
    return chosen


def download(raw_dir: str | Path, mirror: str | Path | None = None,
             samples: list[str] | None = None) -> list[Path]:
    """Fetch the pinned files (or verify-copy them from ``mirror``) into ``raw_dir``."""
    files = files_of_samples(published_checksums(), samples)
    return place_files(files, raw_dir, mirror, url_for=lambda rel: RAW_URL.format(path=rel),
                       layout=f"laid out as github.com/{REPOSITORY}: data/ST-cnts/, "
                       "data/ST-spotfiles/, data/ST-imgs/")


def read_options(sample: str, options: IngestOptions) -> dict:
    """No ingest options: the study's files give image, patient and µm/px."""
    refuse_known_facts("her2st", options)
    return {}


def list_samples(raw_dir: str | Path, config: dict | None = None) -> list[str]:
    """Section names from the count files (``config["samples"]`` narrows them)."""
    raw_dir = Path(raw_dir)
    found = sorted(p.name[: -len(".tsv.gz")] for p in (raw_dir / COUNTS_DIR).glob("*.tsv.gz"))
    if not found:
        raise input_error(raw_dir / COUNTS_DIR, "no count tables (*.tsv.gz)",
                          "run `stflow download` into this folder first")
    wanted = (config or {}).get("samples")
    if wanted:
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise input_error(raw_dir, f"sections {missing} are not downloaded",
                              f"choose among {found} or download them")
        return [s for s in found if s in wanted]
    return found


def read_counts(path: Path) -> ad.AnnData:
    """Spots x genes raw counts; the index is the "XxY" spot id."""
    if not path.is_file():
        raise input_error(path, "count table is missing", "run `stflow download` again")
    try:
        frame = pd.read_csv(path, sep="\t", index_col=0)
    except Exception as err:
        raise input_error(path, f"count table cannot be read ({type(err).__name__}: {err})",
                          "delete it and run `stflow download` again") from err
    if frame.empty or frame.shape[1] == 0:
        raise input_error(path, "count table is empty", "delete it and run `stflow download` again")
    try:
        values = frame.to_numpy(dtype=np.float64)
    except ValueError as err:
        raise input_error(path, "count table holds non-numeric values",
                          "delete it and run `stflow download` again") from err
    obs = pd.DataFrame(index=pd.Index(frame.index.astype(str), name=None))
    var = pd.DataFrame(index=pd.Index(frame.columns.astype(str), name=None))
    return ad.AnnData(X=sp.csr_matrix(values), obs=obs, var=var)


def read_spots(path: Path) -> pd.DataFrame:
    """Selected spot positions indexed by "XxY" (rounded array x, y), with pixel_x, pixel_y."""
    if not path.is_file():
        raise input_error(path, "spot file is missing", "run `stflow download` again")
    try:
        frame = pd.read_csv(path, sep="\t")
    except Exception as err:
        raise input_error(path, f"spot file cannot be read ({err})",
                          "delete it and run `stflow download` again") from err
    needed = {"x", "y", "pixel_x", "pixel_y"}
    if not needed <= set(frame.columns):
        raise input_error(path, f"spot file lacks columns {sorted(needed - set(frame.columns))}",
                          "use the ST-spotfiles/{S}_selection.tsv of the her2st repository")
    if "selected" in frame:
        frame = frame[frame["selected"].astype(int) == 1]
    x = np.round(frame["x"].to_numpy(dtype=float)).astype(int)
    y = np.round(frame["y"].to_numpy(dtype=float)).astype(int)
    frame = frame.assign(x=x, y=y)
    frame.index = pd.Index([f"{a}x{b}" for a, b in zip(x, y, strict=True)])
    if not frame.index.is_unique:
        doubled = frame.index[frame.index.duplicated()].unique()[:5].tolist()
        raise input_error(path, f"several spots share grid positions {doubled}",
                          "keep one row per array position")
    return frame


def grid_mpp(spots: pd.DataFrame, where: str | Path, grid_um: float = GRID_UM) -> float:
    """µm/px from the spot grid: least-squares pixel pitch along x and y, 200 µm per step."""
    pitches = []
    for array_col, pixel_col in (("x", "pixel_x"), ("y", "pixel_y")):
        array = spots[array_col].to_numpy(dtype=float)
        pixel = spots[pixel_col].to_numpy(dtype=float)
        if np.unique(array).size < 2:
            raise input_error(where, f"fewer than 2 distinct grid positions along {array_col}, so "
                              "µm/px is unknown", "ingest a section with spots on several grid "
                              "rows and columns")
        design = np.column_stack([array, np.ones_like(array)])
        (slope, _), *_ = np.linalg.lstsq(design, pixel, rcond=None)
        pitches.append(abs(float(slope)))
    if min(pitches) <= 0 or abs(pitches[0] - pitches[1]) > AXIS_TOLERANCE * max(pitches):
        raise input_error(where, f"pixel pitch differs between x ({pitches[0]:.2f} px) and y "
                          f"({pitches[1]:.2f} px)", "check pixel_x/pixel_y belong to this "
                          "section's image and are not swapped or rescaled")
    return grid_um / float(np.mean(pitches))


def find_image(raw_dir: Path, sample: str) -> tuple[Path, str]:
    """The section's image and its patient (the ST-imgs folder above the section folder)."""
    candidates = sorted(p for p in (raw_dir / IMAGES_DIR).glob(f"*/{sample}/*")
                        if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".tif", ".tiff"})
    if len(candidates) != 1:
        raise input_error(raw_dir / IMAGES_DIR / "{patient}" / sample,
                          f"expected one H&E image, found {len(candidates)}",
                          "run `stflow download` again so the section's image is present")
    return candidates[0], candidates[0].parent.parent.name


def read_sample(raw_dir: str | Path, sample: str, source: str = "her2st") -> IngestedSample:
    """One section in the common ingest form."""
    raw_dir = Path(raw_dir)
    counts_path = raw_dir / COUNTS_DIR / f"{sample}.tsv.gz"
    spots_path = raw_dir / SPOTS_DIR / f"{sample}_selection.tsv"
    counts = read_counts(counts_path)
    spots = read_spots(spots_path)
    missing = counts.obs_names.difference(spots.index)
    if len(missing):
        raise input_error(counts_path, f"{len(missing)} spots have counts but no position in "
                          f"{spots_path.name}, e.g. {missing[:5].tolist()}",
                          "use the spot file that belongs to this count table")
    extra = len(spots.index.difference(counts.obs_names))
    if extra:
        log.info("%s: dropped %d positions without counts", sample, extra)
    spots = spots.loc[counts.obs_names]
    image, patient = find_image(raw_dir, sample)
    return IngestedSample(
        sample=sample, patient=patient, counts=counts,
        spatial_px=spots[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64),
        image_path=image, mpp=grid_mpp(spots, spots_path), source=source)
