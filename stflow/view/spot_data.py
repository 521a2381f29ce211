"""The spots and their values as small script files beside the page (``data/``).

A page opened from disk (file://) may not fetch files, but it may load scripts: each data
file is one call, ``STFLOW_VIEW.<kind>(...)``, carrying base64 arrays. ``data/spots.js``
holds the level-0 pixel centres (float32, x y interleaved) and the shifted flags (uint8);
``data/genes/{index:05d}.js`` one gene's values, loaded when the gene is chosen: each kind
(mean, lower, upper, width, measured) quantised to uint8 on the gene's own range (0..254;
255 where there is no value), so a million spots cost 1 MB a kind.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from stflow.errors import input_error

GENES_DIR = "genes"  # inside a view's data folder: one script per gene, loaded when chosen
MISSING = 255
LEVELS = 254  # values are quantised to 0..254
KIND_LABELS = {"mean": "predicted mean", "lower": "interval lower bound",
               "upper": "interval upper bound", "width": "interval width (upper - lower)",
               "measured": "measured"}


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def script(call: str, *payload: Any) -> str:
    """One data file: ``STFLOW_VIEW.<call>(<payload as JSON>, ...);``."""
    return f"STFLOW_VIEW.{call}({', '.join(json.dumps(p) for p in payload)});\n"


def dense(matrix: Any) -> np.ndarray:
    matrix = matrix.toarray() if hasattr(matrix, "toarray") else matrix
    return np.asarray(matrix, dtype=np.float32)


def value_layers(adata: Any) -> dict[str, np.ndarray]:
    """The matrices a view reads: the predicted mean (X), the interval's bounds where the
    file has them (their width is taken a gene at a time), the measured log1p counts
    (``layers["truth"]``) where known."""
    layers = {"mean": dense(adata.X)}
    if "lower" in adata.layers and "upper" in adata.layers:
        layers["lower"] = dense(adata.layers["lower"])
        layers["upper"] = dense(adata.layers["upper"])
    if "truth" in adata.layers:
        layers["measured"] = dense(adata.layers["truth"])
    return layers


def quantise(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 codes 0..254 over [lo, hi], 255 where a value is not finite."""
    scale = LEVELS / (hi - lo) if hi > lo else 0.0
    codes = np.clip(np.rint((values - lo) * scale), 0, LEVELS)
    codes = np.where(np.isfinite(values), codes, MISSING)
    return codes.astype(np.uint8)


def value_range(arrays: list[np.ndarray]) -> tuple[float, float]:
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return 0.0, 1.0
    return float(min(a.min() for a in finite)), float(max(a.max() for a in finite))


def gene_payload(layers: dict[str, np.ndarray], j: int) -> dict[str, dict]:
    """One gene's kinds: the expression kinds share one range (so switching between mean,
    bounds and measured keeps the colours comparable), the width has its own from 0."""
    columns = {kind: values[:, j] for kind, values in layers.items()}
    if "lower" in columns:
        columns["width"] = columns["upper"] - columns["lower"]
    lo, hi = value_range([v for k, v in columns.items() if k != "width"])
    payload = {}
    for kind, values in columns.items():
        k_lo, k_hi = (0.0, max(value_range([values])[1], 0.0)) if kind == "width" else (lo, hi)
        payload[kind] = {"lo": k_lo, "hi": k_hi, "q": b64(quantise(values, k_lo, k_hi))}
    return payload


def spot_diameter_px(adata: Any, xy: np.ndarray) -> float:
    """Scanpy's spot diameter in level-0 pixels, else the median nearest-spot distance."""
    for library in (adata.uns.get("spatial") or {}).values():
        diameter = (library.get("scalefactors") or {}).get("spot_diameter_fullres")
        if diameter:
            return float(diameter)
    if len(xy) < 2:
        return 10.0
    from scipy.spatial import cKDTree

    sample = xy[np.random.default_rng(0).choice(len(xy), min(len(xy), 20000), replace=False)]
    distances, _ = cKDTree(xy).query(sample, k=2)
    return float(np.median(distances[:, 1])) or 10.0


def spot_positions(adata: Any, where: str | Path) -> np.ndarray:
    """(N, 2) float32 level-0 pixel centres, refused when missing or not finite."""
    if "spatial" not in adata.obsm:
        raise input_error(where, "has no obsm['spatial'] (spot centres in level-0 pixels)",
                          "give a prediction written by stflow predict-slide or predict")
    xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or not np.isfinite(xy).all():
        raise input_error(where, f"obsm['spatial'] is not N x 2 finite numbers "
                          f"(shape {xy.shape})", "give a prediction written by stflow")
    return xy.astype(np.float32)


def write_spot_data(adata: Any, data_dir: Path, *, where: str | Path) -> dict[str, Any]:
    """Write ``spots.js`` and ``genes/*.js``; return the page's facts about them."""
    xy = spot_positions(adata, where)
    shifted = (np.asarray(adata.obs["shifted"], dtype=bool) if "shifted" in adata.obs
               else None)
    (data_dir / GENES_DIR).mkdir(parents=True, exist_ok=True)
    (data_dir / "spots.js").write_text(script("spots", {
        "n": int(len(xy)), "xy": b64(xy),
        "shifted": None if shifted is None else b64(shifted.astype(np.uint8))}))
    layers = value_layers(adata)
    kinds = [*layers, *(["width"] if "lower" in layers else [])]
    kinds = sorted(kinds, key=list(KIND_LABELS).index)
    for j in tqdm(range(adata.n_vars), desc="view: genes", disable=adata.n_vars < 50):
        (data_dir / GENES_DIR / f"{j:05d}.js").write_text(
            script("gene", j, gene_payload(layers, j)))
    return {"n": int(len(xy)), "genes": [str(g) for g in adata.var_names],
            "kinds": [{"kind": k, "label": KIND_LABELS[k]} for k in kinds],
            "spot_diameter_px": spot_diameter_px(adata, xy),
            "n_shifted": None if shifted is None else int(shifted.sum())}
