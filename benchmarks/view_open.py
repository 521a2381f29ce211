"""Time to the first drawn gene of a slide view in headless Chromium (one JSON line per
slide size and run).

    .venv/bin/python benchmarks/view_open.py [--spots 100000 1000000] [--runs 3] [--work DIR]

For each size a synthetic prediction is written first (untimed): spots on a square lattice
8 px apart (16 px below 300,000 spots) over a plain JPEG H&E that just holds them, 5 genes
with the interval's bounds and a shifted flag, and its view (``stflow.view.build.write_view``:
the pyramid, the spot data, the page). Each run then starts a fresh headless Chromium
(Debian's, as the tests use; no network, no cache shared between runs), pinned with this
process to at most 2 cores, opens ``index.html`` from disk and waits until the first gene's
spots are drawn. ``first_gene_ms`` is the page's own clock at that moment
(``performance.now()``: from the start of the navigation), ``wall_ms`` the same seen from
outside (``driver.get`` to the drawn flag), ``first_tile_ms`` when the first H&E tile was
drawn, ``redraw_ms`` what one redraw of the spots costs (as on every pan and zoom). Also printed: the view's write time and the size of its data files.
Target (issue 26): ≤ 3 s for 100,000 spots, ≤ 10 s for a million, on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' chromium driver (tests/browser.py)
sys.path.insert(0, str(REPO))

N_GENES = 5


def synthetic_prediction(folder: Path, n_spots: int) -> Path:
    """``folder/slide.h5ad`` with ``n_spots`` spots over ``folder/slide.jpg``."""
    import anndata as ad
    import pandas as pd
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    pitch = 8.0 if n_spots >= 300_000 else 16.0
    side = int(np.ceil(np.sqrt(n_spots)))
    size = int(side * pitch)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([200 - 40 * np.sin(xx / 37) ** 2, 120 + 50 * np.cos(yy / 29) ** 2,
                      np.full_like(xx, 180)], axis=-1).astype(np.uint8)
    del xx, yy
    Image.fromarray(image).save(folder / "slide.jpg", quality=85)
    del image
    index = np.arange(n_spots)
    xy = np.stack([(index % side + 0.5) * pitch, (index // side + 0.5) * pitch], axis=1)
    rng = np.random.default_rng(0)
    u, v = xy[:, 0] / size, xy[:, 1] / size
    mean = np.stack([np.sin(3 * (g + 1) * u) + np.cos(2 * (g + 1) * v) + 2
                     for g in range(N_GENES)], axis=1).astype(np.float32)
    spread = rng.uniform(0.2, 0.6, mean.shape).astype(np.float32)
    adata = ad.AnnData(mean, obs=pd.DataFrame({"shifted": rng.random(n_spots) < 0.05},
                                              index=index.astype(str)),
                       var=pd.DataFrame(index=[f"GENE{g}" for g in range(N_GENES)]))
    adata.layers["lower"] = mean - spread
    adata.layers["upper"] = mean + spread
    adata.obsm["spatial"] = xy
    adata.uns["spatial"] = {"slide": {"metadata": {"source_image_path": str(folder / "slide.jpg")},
                                      "scalefactors": {"spot_diameter_fullres": pitch * 0.8}}}
    adata.uns["stflow"] = {"sample": f"synthetic {n_spots} spots"}
    path = folder / "slide.h5ad"
    adata.write_h5ad(path)
    return path


def open_once(page: Path) -> dict:
    from browser import start_chromium, wait_for

    driver = start_chromium(width=1280, height=900)
    try:
        start = time.perf_counter()
        driver.get(page.as_uri())
        wait_for(driver, "window.STFLOW_VIEW && STFLOW_VIEW.firstDrawMs", timeout=120)
        wall = (time.perf_counter() - start) * 1000
        first_draw, first_tile, draw, message = driver.execute_script(
            "return [STFLOW_VIEW.firstDrawMs, STFLOW_VIEW.firstTileMs ?? null, STFLOW_VIEW.drawMs,"
            " document.getElementById('message').hidden ? '' : "
            "document.getElementById('message').textContent]")
        if message:
            raise RuntimeError(f"the page says: {message}")
        return {"first_gene_ms": round(first_draw), "wall_ms": round(wall),
                "first_tile_ms": None if first_tile is None else round(first_tile),
                "redraw_ms": round(draw, 1)}
    finally:
        driver.quit()


def bench(n_spots: int, runs: int, work: Path) -> None:
    from stflow.view.build import write_view

    prediction = synthetic_prediction(work / f"s{n_spots}", n_spots)
    start = time.perf_counter()
    view = write_view(prediction, threads=2)
    write_s = time.perf_counter() - start
    data_mb = sum(p.stat().st_size for p in (view / "data").rglob("*.js")) / 2**20
    for run in range(runs):
        result = open_once(view / "index.html")
        print(json.dumps({"spots": n_spots, "run": run, **result,
                          "view_write_s": round(write_s, 1), "data_mb": round(data_mb, 1),
                          "cores": sorted(os.sched_getaffinity(0))}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spots", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))[:2]
    os.sched_setaffinity(0, cores)  # the browser started from here inherits it
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        for n in args.spots:
            bench(n, args.runs, Path(work))


if __name__ == "__main__":
    main()
