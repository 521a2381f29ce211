"""The page: ``index.html``, the app (``view.js``, ``view.css``, shipped in ``static/``),
OpenSeadragon, and ``data/meta.js`` (what the page shows before any gene is loaded)."""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Any

from stflow.catalogue import DEFAULT_BIOMARKERS
from stflow.view.assets import STATIC, copy_openseadragon
from stflow.view.spot_data import MISSING, script

COLORMAP = "viridis"
N_COLOURS = 255  # one colour per code 0..254

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - stflow view</title>
<link rel="stylesheet" href="view.css">
</head>
<body data-state="loading">
<header>
  <h1>{title}</h1>
  <label>Gene <input id="gene" list="gene-names" autocomplete="off" spellcheck="false"
    placeholder="type to search"></label>
  <datalist id="gene-names"></datalist>
  <label>Value <select id="kind"></select></label>
  <label><input id="show-spots" type="checkbox" checked> spots</label>
  <label><input id="mark-shifted" type="checkbox" checked> mark shifted</label>
  <label>opacity <input id="opacity" type="range" min="0" max="1" step="0.05" value="0.85"></label>
  <span id="subtitle"></span>
</header>
<div id="message" role="alert" hidden></div>
<main id="viewer"></main>
<aside id="legend"><div id="legend-title"></div><canvas id="colorbar" width="256" height="14"></canvas>
  <div id="legend-ticks"><span id="legend-lo"></span><span id="legend-hi"></span></div>
  <div id="legend-shifted"></div></aside>
<noscript>This view needs JavaScript.</noscript>
<script src="openseadragon/openseadragon.min.js"></script>
<script src="view.js"></script>
<script>if (!window.STFLOW_VIEW) {{ var m = document.getElementById("message");
  m.textContent = "view.js: the page's script is missing or cannot be read. Fix: rebuild the " +
    "view with `stflow view SLIDE.h5ad`."; m.hidden = false; document.body.dataset.state = "error"; }}</script>
</body>
</html>
"""


def colormap_rgb(n: int = 256) -> list[list[int]]:
    """The colour map as ``n`` RGB triples (matplotlib's, so maps and views agree)."""
    import matplotlib
    import numpy as np

    colours = matplotlib.colormaps[COLORMAP](np.linspace(0.0, 1.0, n))[:, :3]
    return np.rint(colours * 255).astype(int).tolist()


def first_gene(genes: list[str]) -> str:
    """A default biomarker the slide has, else its first gene."""
    return next((g for g in DEFAULT_BIOMARKERS if g in genes), genes[0] if genes else "")


def write_page(out_dir: Path, *, title: str, subtitle: str, spots: dict[str, Any],
               tile_source: dict) -> None:
    """Write the page, its app and OpenSeadragon, and ``data/meta.js``."""
    copy_openseadragon(out_dir)
    for name in ("view.js", "view.css"):
        shutil.copy2(STATIC / name, out_dir / name)
    meta = {**spots, "title": title, "subtitle": subtitle, "tile_source": tile_source,
            "first_gene": first_gene(spots["genes"]), "colormap": colormap_rgb(N_COLOURS),
            "missing": MISSING}
    (out_dir / "data").mkdir(exist_ok=True)
    (out_dir / "data" / "meta.js").write_text(script("meta", meta))
    (out_dir / "index.html").write_text(PAGE.format(title=html.escape(title)))

