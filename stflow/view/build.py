"""One view from one prediction file: ``write_view`` (behind ``stflow view`` and the
workflow's ``view`` rules)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from stflow.atomic import atomic_output
from stflow.errors import input_error
from stflow.view.page import write_page
from stflow.view.pyramid import image_size, write_pyramid
from stflow.view.spot_data import spot_positions, write_spot_data

log = logging.getLogger(__name__)


def read_prediction(path: Path) -> Any:
    """The prediction h5ad, refused with the file's name when it cannot be read."""
    import anndata as ad

    if not path.is_file():
        raise input_error(path, "prediction file not found",
                          "give a slides/{name}.h5ad or predictions/.../{sample}.h5ad")
    try:
        return ad.read_h5ad(path)
    except Exception as err:  # h5py, anndata and OS errors alike: the file is unreadable
        raise input_error(path, f"cannot be read as an h5ad ({type(err).__name__}: {err})",
                          "give a prediction written by stflow predict-slide or predict; "
                          "rerun that stage if the file is damaged") from None


def named_image(adata: Any, where: Path) -> Path:
    """The H&E the file names (scanpy's ``source_image_path``), relative to the file too."""
    for library in (adata.uns.get("spatial") or {}).values():
        named = (library.get("metadata") or {}).get("source_image_path")
        if named:
            for path in (Path(str(named)), where.parent / str(named)):
                if path.is_file():
                    return path
            raise input_error(where, f"names the H&E {named}, which does not exist",
                              "pass the slide's image with --image")
    raise input_error(where, "names no H&E image (uns['spatial'][...]['metadata']"
                      "['source_image_path'])", "pass the slide's image with --image")


def check_on_image(xy: np.ndarray, width: int, height: int, where: Path, image: Path) -> None:
    """Refuse an image most spots fall off (a downscaled copy, another slide)."""
    inside = ((xy[:, 0] >= 0) & (xy[:, 0] <= width) & (xy[:, 1] >= 0) & (xy[:, 1] <= height))
    if len(xy) and inside.mean() < 0.5:
        raise input_error(image, f"only {inside.mean():.0%} of the {len(xy)} spots of {where} "
                          f"fall on this {width} x {height} px image (spots are in level-0 "
                          "pixels)", "give the full-resolution H&E the spots were predicted "
                          "on with --image")


def subtitle_of(adata: Any) -> str:
    info = adata.uns.get("stflow") or {}
    parts = [f"{adata.n_obs} spots", f"{adata.n_vars} genes"]
    if info.get("model"):
        parts.append(f"model {info['model']}")
    intervals = info.get("intervals") or {}
    if intervals.get("level"):
        parts.append(f"{float(intervals['level']):.0%} intervals, calibrated "
                     f"{intervals.get('calibration', 'within')}")
    return ", ".join(parts)


def default_out(h5ad: Path) -> Path:
    return h5ad.with_name(f"{h5ad.stem}.view")


def write_view(h5ad: str | Path, *, out: str | Path | None = None,
               image: str | Path | None = None, threads: int = 1) -> Path:
    """Write the view of ``h5ad`` (a new slide's or a fold's prediction) as a folder that
    opens offline: ``index.html``, the pyramid, the spot data and OpenSeadragon."""
    h5ad = Path(h5ad)
    out = Path(out) if out else default_out(h5ad)
    adata = read_prediction(h5ad)
    image = Path(image) if image else named_image(adata, h5ad)
    return view_of(adata, h5ad, image, out=out, threads=threads)


def view_of(adata: Any, h5ad: Path, image: Path, *, out: Path, threads: int) -> Path:
    """The view of ``adata`` (read from ``h5ad``) over ``image``, written atomically."""
    xy = spot_positions(adata, h5ad)
    check_on_image(xy, *image_size(image), h5ad, image)
    title = str((adata.uns.get("stflow") or {}).get("sample") or h5ad.stem)
    with atomic_output(out) as tmp:
        tmp.mkdir()
        pyramid = write_pyramid(image, tmp, threads=threads)
        spots = write_spot_data(adata, tmp / "data", where=h5ad)
        write_page(tmp, title=title, subtitle=subtitle_of(adata), spots=spots,
                   tile_source=pyramid.tile_source("image_files/"))
    log.info("view of %s (%d spots, %d genes) in %s: open %s", h5ad, adata.n_obs,
             adata.n_vars, out, out / "index.html")
    return out


def names_no_image(adata: Any) -> bool:
    """True for a file without an H&E (a HEST-Benchmark sample: its image is a patch file)."""
    return not any((library.get("metadata") or {}).get("source_image_path")
                   for library in (adata.uns.get("spatial") or {}).values())


def write_views(predictions_dir: str | Path, *, out: str | Path, threads: int = 1) -> Path:
    """A view of each prediction file of a fold's folder (its test sections, with the
    measured expression beside the predicted), as ``out/{sample}.view``; a section without
    an H&E (HEST-Benchmark's patch files) gets none, and the log says so."""
    predictions_dir, out = Path(predictions_dir), Path(out)
    files = sorted(predictions_dir.glob("*.h5ad"))
    if not files:
        raise input_error(predictions_dir, "holds no prediction file (*.h5ad)",
                          "rerun the fold's predict job")
    with atomic_output(out) as tmp:
        tmp.mkdir()
        for path in files:
            adata = read_prediction(path)
            if names_no_image(adata):
                log.warning("%s: no H&E image (uns['spatial']), so no view of it", path)
                continue
            view_of(adata, path, named_image(adata, path), out=tmp / f"{path.stem}.view",
                    threads=threads)
    return out
