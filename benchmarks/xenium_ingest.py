"""Time and peak memory of ingesting a large Xenium section (one JSON line per step).

    .venv/bin/python benchmarks/xenium_ingest.py [--transcripts 20000000] [--bin-um 55]
                                                 [--unit transcripts] [--work DIR]

A synthetic Xenium output folder is written first (untimed): ``transcripts.parquet`` with
``--transcripts`` rows in row groups of one million (a 380-gene panel plus control probes,
blank and unassigned codewords; 10 % below the quality threshold) over a 10 x 8 mm section,
streamed to disk so that the writer never holds them; cells (1,000), ``experiment.xenium``
and ``cells.zarr.zip`` as the reader needs them; an H&E at 4 µm/px with its alignment (the
H&E's size does not change the binning; a coarse one keeps the set-up short). The ingest
(``read_xenium`` through spatialdata-io, then ``write_st``) runs in a child process, so its
peak RSS (VmHWM) is its own. ``feature_name`` is written as bytes, as Xenium Onboard Analysis
does, the costlier case for the reader (it decodes them). Target (issue 27): under 16 GB and 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' Xenium layout writers

FIELD_UM = (10_000.0, 8_000.0)
HE_UM_PER_PX = 4.0
ROW_GROUP = 1_000_000
N_GENES = 380


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_transcripts(path: Path, n: int, seed: int = 0) -> None:
    """``n`` transcripts in the tissue ellipse, one row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from xenium_layout import CONTROLS

    names = [f"GENE{i:03d}" for i in range(N_GENES)] + CONTROLS
    weights = np.r_[np.linspace(1, 20, N_GENES), np.full(len(CONTROLS), 5.0)]
    rng = np.random.default_rng(seed)
    width, height = FIELD_UM
    schema = pa.schema([("transcript_id", pa.uint64()), ("cell_id", pa.string()),
                        ("overlaps_nucleus", pa.uint8()),
                        ("feature_name", pa.binary()),
                        ("x_location", pa.float32()), ("y_location", pa.float32()),
                        ("z_location", pa.float32()), ("qv", pa.float32())])
    encoded = np.array([s.encode() for s in names], dtype=object)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n, ROW_GROUP):
            size = min(ROW_GROUP, n - start)
            angle, radius = rng.uniform(0, 2 * np.pi, size), np.sqrt(rng.uniform(0, 1, size))
            x = width / 2 + 0.45 * width * radius * np.cos(angle)
            y = height / 2 + 0.45 * height * radius * np.sin(angle)
            codes = rng.choice(len(names), size, p=weights / weights.sum())
            qv = np.where(rng.random(size) < 0.1, 10.0, 30.0).astype(np.float32)
            writer.write_table(pa.table({
                "transcript_id": pa.array(np.arange(start, start + size, dtype=np.uint64)),
                "cell_id": pa.array(["UNASSIGNED"] * size),
                "overlaps_nucleus": pa.array(np.zeros(size, np.uint8)),
                "feature_name": pa.array(encoded[codes], pa.binary()),  # bytes, as XOA
                "x_location": pa.array(x.astype(np.float32)),
                "y_location": pa.array(y.astype(np.float32)),
                "z_location": pa.array(np.full(size, 10.0, np.float32)),
                "qv": pa.array(qv)}, schema=schema))


def build(work: Path, n: int) -> dict:
    """The Xenium folder, the H&E and the alignment under ``work``."""
    import pandas as pd
    from spaceranger_layout import write_10x_h5
    from xenium_layout import (
        PIXEL_SIZE,
        cell_ids,
        write_alignment,
        write_cells_zarr,
        write_he,
    )

    folder = work / "xenium"
    folder.mkdir(parents=True)
    (folder / "experiment.xenium").write_text(json.dumps(
        {"analysis_sw_version": "xenium-2.0.0.10", "pixel_size": PIXEL_SIZE}))
    rng = np.random.default_rng(1)
    centroids = rng.uniform([3000, 3000], [7000, 5000], (1000, 2))
    write_cells_zarr(folder / "cells.zarr.zip", len(centroids), centroids)
    ids = cell_ids(len(centroids))
    pd.DataFrame({"cell_id": ids, "x_centroid": centroids[:, 0], "y_centroid": centroids[:, 1],
                  "cell_area": 50.0}).to_parquet(folder / "cells.parquet", index=False)
    write_10x_h5(folder / "cell_feature_matrix.h5", rng.poisson(1.0, (len(ids), 10)), ids,
                 [f"GENE{i:03d}" for i in range(10)])
    start = time.perf_counter()
    write_transcripts(folder / "transcripts.parquet", n)
    affine = np.eye(3)
    affine[:2, :2] *= HE_UM_PER_PX / PIXEL_SIZE  # H&E px -> Xenium px
    write_he(work / "he.tif", affine, FIELD_UM, seed=0)
    write_alignment(work / "he_imagealignment.csv", affine)
    return {"step": "build", "transcripts": n, "seconds": round(time.perf_counter() - start, 1),
            "parquet_mb": round((folder / "transcripts.parquet").stat().st_size / 1e6, 1)}


def ingest(work: Path, bin_um: float, unit: str) -> dict:
    """The measured step (run in the child)."""
    from stflow.data.sources.ingest_form import write_st
    from stflow.data.sources.xenium import read_xenium

    start = time.perf_counter()
    sample = read_xenium(work / "xenium", alignment=work / "he_imagealignment.csv",
                         image=work / "he.tif", bin_um=bin_um, unit=unit, sample="bench",
                         patient="P1")
    read_s = time.perf_counter() - start
    write_st(sample, work / "st" / "bench.h5ad")
    return {"step": "ingest", "unit": unit, "bin_um": bin_um, "bins": sample.counts.n_obs,
            "genes": sample.counts.n_vars, "counted": int(sample.counts.X.sum()),
            "read_and_bin_s": round(read_s, 1),
            "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcripts", type=int, default=20_000_000)
    parser.add_argument("--bin-um", type=float, default=55.0)
    parser.add_argument("--unit", choices=("transcripts", "cells"), default="transcripts")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the layout here (default: a temporary folder)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(ingest(args.work, args.bin_um, args.unit)))
        return
    with tempfile.TemporaryDirectory(prefix="stflow-xenium-") as tmp:
        work = args.work or Path(tmp)
        if not (work / "xenium" / "transcripts.parquet").is_file():
            print(json.dumps(build(work, args.transcripts)), flush=True)
        result = subprocess.run(
            [sys.executable, __file__, "--child", "--work", str(work), "--bin-um",
             str(args.bin_um), "--unit", args.unit],
            capture_output=True, text=True, check=False, cwd=REPO,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        if result.returncode != 0:
            sys.exit(f"ingest failed:\n{result.stderr[-3000:]}")
        print(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
