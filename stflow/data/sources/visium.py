"""The visium source (older configs; the sample sheet is the documented way): Space Ranger
``outs/`` folders plus their full-resolution H&E images.

``raw_dir`` holds one folder per sample (``raw_dir/{sample}/``, either the ``outs/`` folder
itself or a folder containing ``outs/``) with ``filtered_feature_bc_matrix.h5``,
``spatial/tissue_positions.csv`` (Space Ranger >= 2, with header) or
``tissue_positions_list.csv`` (older, no header), and ``spatial/scalefactors_json.json``.
The full-resolution image is not in ``outs/``: it is found as ``raw_dir/{sample}/image.*`` (or ``config["images"][sample]``) or passed as ``image``.
"""

from __future__ import annotations

from pathlib import Path

from stflow.data.sources.fetch import copy_tree
from stflow.data.sources.ingest_form import IngestedSample
from stflow.data.sources.options import IngestOptions, refuse_sheet_row
from stflow.data.sources.spaceranger import read_outs
from stflow.errors import input_error

IMAGE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".jpg", ".jpeg", ".png", ".btf")


def outs_dir(raw_dir: str | Path, sample: str) -> Path:
    """The ``outs/`` folder of a sample (``raw_dir/sample/outs`` or ``raw_dir/sample``)."""
    base = Path(raw_dir) / sample
    for candidate in (base / "outs", base):
        if (candidate / "filtered_feature_bc_matrix.h5").is_file():
            return candidate
    raise input_error(base, "no filtered_feature_bc_matrix.h5 (in it or in outs/)",
                      "place the Space Ranger outs/ folder of this sample there")


def download(raw_dir: str | Path, mirror: str | Path | None = None,
             samples: list[str] | None = None) -> None:
    """Copy the Space Ranger folders of a local ``mirror`` (there is no public download)."""
    if mirror is None:
        raise input_error("--mirror-dir", "visium has no public download",
                          "pass --mirror-dir DIR holding one Space Ranger outs/ folder per sample")
    copy_tree(Path(mirror), Path(raw_dir), [f"{s}/*" for s in samples or []] or None,
              "one Space Ranger outs/ folder per sample")


def read_options(sample: str, options: IngestOptions) -> dict:
    """The full-resolution image and the patient, which Space Ranger does not record."""
    refuse_sheet_row("visium", options)
    config = {"patients": {sample: options.patient}} if options.patient else None
    if options.require_patient and not options.patient:
        raise input_error(f"stflow ingest --sample {sample}", "visium sections carry "
                          "no patient id, so patient-stratified folds could leak",
                          "map the sample to its patient (dataset.patients in the config, "
                          "--patient here)")
    return {"image": options.image, "config": config}


def list_samples(raw_dir: str | Path, config: dict | None = None) -> list[str]:
    """Sample folders under ``raw_dir`` that hold a Space Ranger matrix."""
    raw_dir = Path(raw_dir)
    found = sorted(p.name for p in raw_dir.iterdir() if p.is_dir()
                   and any((d / "filtered_feature_bc_matrix.h5").is_file() for d in (p, p / "outs")))
    if not found:
        raise input_error(raw_dir, "no sample folders with filtered_feature_bc_matrix.h5",
                          "put each Space Ranger outs/ folder in raw_dir/{sample}/")
    wanted = (config or {}).get("samples")
    return [s for s in found if not wanted or s in wanted]


def find_image(raw_dir: Path, sample: str, config: dict | None) -> Path:
    """The full-resolution H&E of a sample: from config, or ``raw_dir/{sample}/image.*``."""
    images = (config or {}).get("images") or {}
    if sample in images:
        return Path(images[sample])
    for suffix in IMAGE_SUFFIXES:
        candidate = raw_dir / sample / f"image{suffix}"
        if candidate.is_file():
            return candidate
    raise input_error(raw_dir / sample, "no full-resolution image (image.tif, image.jpg, ...)",
                      "pass --image PATH, or put the image used by Space Ranger there as image.*")


def read_sample(raw_dir: str | Path, sample: str, image: str | Path | None = None,
                config: dict | None = None) -> IngestedSample:
    """One Visium section in the common ingest form (in-tissue spots only), read by
    spatialdata-io (:mod:`stflow.data.sources.spaceranger`)."""
    raw_dir = Path(raw_dir)
    outs = outs_dir(raw_dir, sample)
    image_path = Path(image) if image is not None else find_image(raw_dir, sample, config)
    patient = str((config or {}).get("patients", {}).get(sample, sample))
    return read_outs(outs, sample=sample, patient=patient, image=image_path, source="visium")
