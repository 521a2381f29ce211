"""Patches of an ingested sample: cut from its slide, or taken from a HEST-bench patch file.

Kept apart from :mod:`stflow.data.patches.extract` and :mod:`stflow.data.patches.bench`, which it
chooses between, so neither of those imports the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stflow.data.patches.bench import is_patch_file, patches_from_bench_h5
from stflow.data.patches.extract import PatchSummary, extract_patches
from stflow.errors import input_error


def patches_from_h5ad(st_h5ad: str | Path, out: str | Path, **options: object) -> PatchSummary:
    """Extract patches for an ingested ``st/{sample}.h5ad`` (centres, mpp and image from it)."""
    import anndata

    st_h5ad = Path(st_h5ad)
    try:
        adata = anndata.read_h5ad(st_h5ad, backed="r")
    except (OSError, KeyError) as err:
        raise input_error(st_h5ad, f"cannot read the ingested sample ({err})",
                          "re-run the ingest stage for this sample") from err
    try:
        for key in ("mpp", "image_path"):
            if key not in adata.uns:
                raise input_error(st_h5ad, f"uns['{key}'] is missing",
                                  "re-run the ingest stage (it records mpp and image_path)")
        if "spatial" not in adata.obsm:
            raise input_error(st_h5ad, "obsm['spatial'] is missing",
                              "re-run the ingest stage (it records the spot centres)")
        # a HEST-bench sample has a patch file, not a slide: take its patches as they are
        extract = patches_from_bench_h5 if is_patch_file(adata.uns["image_path"]) \
            else extract_patches
        return extract(adata.uns["image_path"], np.asarray(adata.obsm["spatial"]),
                       mpp=float(adata.uns["mpp"]), barcodes=list(adata.obs_names), out=out,
                       sample=str(adata.uns.get("sample", st_h5ad.stem)), **options)
    finally:
        adata.file.close()
