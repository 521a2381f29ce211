"""The sheet source: a user's own sections, one row of a sample sheet each
(:mod:`stflow.data.sample_sheet` defines and validates the sheet).

Nothing is downloaded: :func:`download` validates the sheet and writes ``raw/sheet.tsv``,
the same rows with absolute paths (a record of what the study read, checksummed in the
manifest); the data stay where the user keeps them. A row is either a Space Ranger
``outs/`` folder, Visium or Visium HD at one bin size (read by spatialdata-io,
:mod:`stflow.data.sources.spaceranger`), a Xenium output folder binned into square bins
(:mod:`stflow.data.sources.xenium`), or an image with a counts table and spot positions
(read here).
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from stflow.atomic import atomic_output
from stflow.data.sample_sheet import SheetRow, read_sheet, sheet_row, sheet_samples, write_resolved
from stflow.data.sources.ingest_form import IngestedSample
from stflow.data.sources.options import IngestOptions
from stflow.data.sources.spaceranger import read_hd, read_outs
from stflow.data.sources.xenium import read_xenium
from stflow.errors import input_error

log = logging.getLogger(__name__)

RESOLVED = "sheet.tsv"
POSITION_COLUMNS = ("barcode", "x_px", "y_px")


def download(raw_dir: str | Path, sheet: str | Path | None = None,
             samples: list[str] | None = None, mirror: str | Path | None = None) -> Path:
    """Validate ``sheet`` and write its rows (``samples`` only, when given) with absolute
    paths to ``raw_dir/sheet.tsv``; a mirror is refused (the data stay where they are)."""
    if sheet is None or mirror is not None:
        raise input_error("--sheet", "source sheet reads a sample sheet, not a mirror",
                          "pass --sheet path/to/samples.tsv (and no --mirror)")
    wanted = set(sheet_samples(sheet, samples))
    rows = [row for row in read_sheet(sheet) if row.sample in wanted]
    out = Path(raw_dir) / RESOLVED
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        write_resolved(rows, tmp)
    return out


def read_options(sample: str, options: IngestOptions) -> dict:
    """The sample's sheet row (default: its row in raw/sheet.tsv); the sheet gives the rest."""
    if options.image or options.patient or options.mpp:
        raise input_error("stflow ingest", "--image/--patient/--mpp do not apply to sheet",
                          "give them in the sample sheet's image, patient and um_per_px "
                          "columns")
    return {"row": options.row}


def list_samples(raw_dir: str | Path, config: dict | None = None) -> list[str]:
    """The samples of ``raw_dir/sheet.tsv`` (``config["samples"]`` narrows them)."""
    return sheet_samples(Path(raw_dir) / RESOLVED, (config or {}).get("samples"))


def read_sample(raw_dir: str | Path, sample: str, row: dict | None = None) -> IngestedSample:
    """One row in the common ingest form: ``row`` (:meth:`SheetRow.to_params`, as the workflow
    passes it) or the sample's row of ``raw_dir/sheet.tsv``."""
    entry = SheetRow.from_params(row) if row else sheet_row(Path(raw_dir) / RESOLVED, sample)
    if entry.sample != sample:
        raise input_error(f"sample {sample}", f"was given the sheet row of {entry.sample}",
                          "pass the row of the sample being ingested")
    if entry.xenium is not None:
        if entry.alignment is None or entry.unit is None or entry.bin_um is None:
            raise input_error(f"sample {sample}", "the Xenium row lacks alignment, unit or "
                              "bin_um", "read the sheet again (stflow download)")
        return read_xenium(entry.xenium, alignment=entry.alignment, image=entry.image,
                           bin_um=float(entry.bin_um), unit=entry.unit, sample=sample,
                           patient=entry.patient, source="sheet")
    if entry.spaceranger is not None and entry.bin_um is not None:  # Visium HD
        return read_hd(entry.spaceranger, int(entry.bin_um), sample=sample, patient=entry.patient,
                       image=entry.image, um_per_px=entry.um_per_px, source="sheet")
    if entry.spaceranger is not None:
        return read_outs(entry.spaceranger, sample=sample, patient=entry.patient,
                         image=entry.image, um_per_px=entry.um_per_px, source="sheet")
    if entry.counts is None or entry.positions is None or entry.um_per_px is None:
        raise input_error(f"sample {sample}", "the row has neither a Space Ranger folder nor "
                          "counts, positions and um_per_px", "complete the sheet row")
    counts = read_counts(entry.counts)
    positions = read_positions(entry.positions)
    missing = counts.obs_names.difference(positions.index)
    if len(missing):
        raise input_error(entry.counts, f"{len(missing)} barcodes have counts but no position "
                          f"in {entry.positions.name}, e.g. {missing[:5].tolist()}",
                          "use the positions file of the same section")
    extra = len(positions.index.difference(counts.obs_names))
    if extra:
        log.info("%s: dropped %d positions without counts", sample, extra)
    spatial = positions.loc[counts.obs_names, ["x_px", "y_px"]].to_numpy(dtype=np.float64)
    return IngestedSample(sample=sample, patient=entry.patient, counts=counts,
                          spatial_px=spatial, image_path=entry.image, mpp=entry.um_per_px,
                          source="sheet")


def read_counts(path: Path) -> ad.AnnData:
    """A counts TSV (spots x genes, first column the barcode) as raw counts."""
    try:
        frame = pd.read_csv(path, sep="\t", index_col=0)
        values = frame.to_numpy(dtype=np.float64)
    except Exception as err:  # any parser error means the same thing to the user
        raise input_error(path, f"counts table cannot be read ({type(err).__name__}: {err})",
                          "write it as TSV: a header of gene names, then one row per spot "
                          "starting with its barcode, numbers only") from err
    if frame.empty:
        raise input_error(path, "counts table has no spots or no genes",
                          "write one row per spot and one column per gene")
    if not frame.index.is_unique:
        doubled = frame.index[frame.index.duplicated()].unique()[:5].tolist()
        raise input_error(path, f"barcodes occur more than once, e.g. {doubled}",
                          "keep one row per spot")
    obs = pd.DataFrame(index=pd.Index(frame.index.astype(str), name=None))
    var = pd.DataFrame(index=pd.Index(frame.columns.astype(str), name=None))
    return ad.AnnData(X=sp.csr_matrix(values), obs=obs, var=var)


def read_positions(path: Path) -> pd.DataFrame:
    """A positions CSV (barcode, x_px, y_px) indexed by barcode."""
    try:
        frame = pd.read_csv(path, dtype={"barcode": str})
    except Exception as err:
        raise input_error(path, f"positions cannot be read ({type(err).__name__}: {err})",
                          "write a CSV with header barcode,x_px,y_px") from err
    missing = [c for c in POSITION_COLUMNS if c not in frame.columns]
    if missing:
        raise input_error(path, f"lacks columns {missing}",
                          "write a CSV with header barcode,x_px,y_px (level-0 pixels, x = "
                          "column)")
    frame = frame.set_index("barcode")
    if not frame.index.is_unique:
        doubled = frame.index[frame.index.duplicated()].unique()[:5].tolist()
        raise input_error(path, f"barcodes occur more than once, e.g. {doubled}",
                          "keep one position per spot")
    return frame
