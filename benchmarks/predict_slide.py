"""Speed and memory of predict-slide on a synthetic 40x slide (one JSON line per part).

    .venv/bin/python benchmarks/predict_slide.py [--spots 3000] [--embed-spots 128]
                                                 [--n-samples 8] [--threads 2]
                                                 [--pitch-um 100] [--layout hex]
    .venv/bin/python benchmarks/predict_slide.py --spots 1000000 --pitch-um 8 \
        --layout square --parts tissue graph sampling intervals write whole

A tiled, pyramidal TIFF at 0.25 µm/px (40x) is written on the fly from a few pre-encoded
tiles, sized so that the tissue (an ellipse) holds about ``--spots`` virtual spots on the
``--pitch-um`` ``--layout`` lattice (default 100 µm hexagonal: Visium; 8 µm square: Visium
HD bins); ``--spots 50000`` makes a ~100k x 100k px slide at the default lattice. Each part
runs in its own child process, so its peak RSS (VmHWM) is its own:

Seconds count the work only (not imports or model loading); peak RSS counts everything.

- tissue: thumbnail, tissue mask and virtual spots;
- patches: every 112 µm window read (224 px) and streamed in batches, nothing kept;
- embedding: efficientnet_lite0 on ``--embed-spots`` of those patches (CPU; the full count
  is extrapolated);
- graph: the kNN graph (k = 8) of all spots, by KD-tree;
- sampling: ``--n-samples`` flow samples of an STFlow model (paper size) over all spots,
  given random features of the encoder's width, standardised in place and their mean and
  spread kept as predict-slide does (one sample at a time, ``--chunk-spots``);
- intervals: the calibrated intervals and shift scores of all spots (random features and
  predictions), a chunk at a time, as predict-slide makes them before writing;
- write: the prediction h5ad (mean, spread, intervals, graph) and two PNG maps;
- whole: ``predict_slides`` end to end with the spots and features given as a features store
  (``--features``; the store is written first, untimed): tissue, graph, sampling,
  intervals, writing.

The model (paper size, 50 genes) is fitted for one epoch on random spots and calibrated on
others, so it has intervals; only its speed and memory mean anything.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from stflow.choices import MIN_TISSUE, PATCH_SIZE_PX, PATCH_SIZE_UM

MPP = 0.25
TILE = 256
TISSUE_SHARE = 0.6  # of the image area, covered by the tissue ellipse
PATCH_UM, PATCH_PX = float(PATCH_SIZE_UM), PATCH_SIZE_PX
BARE_MAX = 4096  # windows held in memory for the bare forward (the first ones embedded)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def side_for(spots: int, pitch_um: float, layout: str) -> int:
    """Level-0 side (px) of a square slide whose tissue holds about ``spots`` lattice spots."""
    # 5% more: tile-sized steps on the tissue edge and the window filter lose some spots
    cell_um2 = pitch_um**2 * (math.sqrt(3) / 2 if layout == "hex" else 1.0)
    area_um2 = 1.05 * spots * cell_um2 / TISSUE_SHARE
    return int(math.ceil(math.sqrt(area_um2) / MPP / TILE)) * TILE


def encoded_tiles(rng: np.random.Generator, n: int) -> list[bytes]:
    """A few H&E-coloured tiles (periodic, so deflate packs them small), zlib-encoded."""
    tiles = []
    x = np.arange(TILE)
    for _ in range(n):
        px, py, phase = rng.integers(8, 17), rng.integers(8, 17), rng.uniform(0, 6.28)
        y = x[:, None]
        texture = (30 + 29 * np.sin(2 * np.pi * x / px + phase) * np.cos(2 * np.pi * y / py))
        texture = texture.astype(np.uint8)
        tile = np.stack([200 - texture // 2, 90 + texture, np.full_like(texture, 170)], -1)
        tiles.append(zlib.compress(np.ascontiguousarray(tile).tobytes(), 6))
    return tiles


def write_slide(path: Path, side: int) -> None:
    """A pyramidal tiled TIFF (levels down to < 2048 px) with a tissue ellipse, tile by tile."""
    import tifffile

    rng = np.random.default_rng(0)
    tissue = encoded_tiles(rng, 8)
    glass = zlib.compress(np.full((TILE, TILE, 3), 244, np.uint8).tobytes(), 6)
    per_cm = 1e4 / MPP
    radius = math.sqrt(TISSUE_SHARE / math.pi)  # ellipse (a circle here) of that area share
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        level = 0
        while True:
            size = math.ceil(side / 2**level)
            n_tiles = math.ceil(size / TILE)

            def tiles(n_tiles: int = n_tiles, size: int = size):
                for ty in range(n_tiles):
                    for tx in range(n_tiles):
                        u = ((tx + 0.5) * TILE / size) - 0.5
                        v = ((ty + 0.5) * TILE / size) - 0.5
                        inside = u * u + v * v < radius * radius
                        yield tissue[(tx * 7 + ty * 3) % len(tissue)] if inside else glass

            tif.write(tiles(), shape=(size, size, 3), dtype=np.uint8, tile=(TILE, TILE),
                      photometric="rgb", compression="zlib",
                      resolution=(per_cm / 2**level, per_cm / 2**level),
                      resolutionunit="CENTIMETER", subfiletype=1 if level else 0,
                      metadata=None)
            if size <= 2048:
                break
            level += 1


# ------------------------------------------------------------------ parts (child processes)

def part_tissue(slide: str, work: Path, pitch_um: float, layout: str) -> dict:
    from stflow.data.patches import open_slide, tissue_mask
    from stflow.deploy.spot_grid import SpotLayout, virtual_spots

    start = time.perf_counter()
    with open_slide(slide) as reader:
        thumb, scale = reader.thumbnail(2048)
        mask, _ = tissue_mask(np.asarray(thumb))
        spots = virtual_spots(mask, scale, reader.width, reader.height, MPP,
                              SpotLayout(pitch_um, layout), PATCH_UM, MIN_TISSUE)
    seconds = time.perf_counter() - start
    np.save(work / "centres.npy", spots.centres_px)
    return {"spots": spots.n, "seconds_timed": seconds}


def part_patches(slide: str, work: Path, threads: int) -> dict:
    from stflow.data.patches import open_slide
    from stflow.deploy.window_embedding import window_batches

    centres = np.load(work / "centres.npy")
    checksum = 0
    start = time.perf_counter()
    with open_slide(slide) as reader:
        for batch in window_batches(reader, centres, PATCH_UM / MPP, PATCH_PX, 64, threads):
            checksum += int(batch[:, PATCH_PX // 2, PATCH_PX // 2, 0].sum())
    return {"spots": len(centres), "seconds_timed": time.perf_counter() - start}


def part_embedding(slide: str, work: Path, threads: int, n: int, device: str) -> dict:
    """predict-slide's embedding (windows read from the slide as it reads them) against the
    bare forward on the same windows already in memory: same encoder, transform, precision,
    batch size (``iter_features``); after a warm-up, best of two alternating rounds each."""
    import torch

    from stflow.data.encoders import load_encoder
    from stflow.data.patches import open_slide
    from stflow.deploy.predict_slide import SlideOptions
    from stflow.deploy.window_embedding import embed_windows, use_processes, window_batches

    torch.set_num_threads(threads)
    dev = torch.device(device)
    centres = np.load(work / "centres.npy")[:n]
    encoder = load_encoder("efficientnet_lite0")
    side, batch = PATCH_UM / MPP, SlideOptions().batch_size  # predict-slide's default
    with open_slide(slide) as reader:
        start = time.perf_counter()  # the windows of the bare forward, read by threads
        bare_batches = list(window_batches(reader, centres[:BARE_MAX], side, PATCH_PX, batch,
                                           threads))
        bare_n = sum(len(b) for b in bare_batches)
        read_rate = bare_n / (time.perf_counter() - start)
        if dev.type == "cuda":  # as the readers hand them over
            bare_batches = [b.pin_memory() for b in bare_batches]
        embed_windows(reader, centres[:batch], side, PATCH_PX, encoder, dev, batch, threads)
        bare_s, embed_s = [], []
        for _ in range(2):
            bare_s.append(_timed_s(lambda: _forward(encoder, bare_batches, dev), dev))
            embed_s.append(_timed_s(lambda: embed_windows(reader, centres, side, PATCH_PX,
                                                          encoder, dev, batch, threads), dev))
        processes = use_processes(reader, len(centres), dev)
    bare_rate, embed_rate = bare_n / min(bare_s), len(centres) / min(embed_s)
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
    return {"spots": len(centres), "seconds_timed": min(embed_s), "device": str(dev),
            "batch_size": batch, "readers": f"{threads} {'processes' if processes else 'threads'}",
            "read_by_threads_patches_per_s": round(read_rate, 1), "bare_patches": bare_n,
            "bare_patches_per_s": round(bare_rate, 1),
            "embed_patches_per_s": round(embed_rate, 1),
            "ratio": round(embed_rate / bare_rate, 3),
            "rounds_s": {"bare": [round(x, 2) for x in bare_s],  # the first embed round
                         "embed": [round(x, 2) for x in embed_s]},  # may start a forkserver
            "peak_gpu_memory_mib": None if peak is None else round(peak, 1)}


def _forward(encoder, batches: list, dev) -> int:
    """The bare forward of ``iter_features`` over batches already in memory."""
    from stflow.data.embedding import iter_features

    return sum(len(f) for f in iter_features(encoder, batches, dev))


def _timed_s(work, dev) -> float:
    """Seconds of ``work()``, the GPU's queue drained on both sides."""
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    work()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def part_graph(work: Path) -> dict:
    from stflow.data.graph import knn_graph

    centres = np.load(work / "centres.npy")
    start = time.perf_counter()
    neighbors, _ = knn_graph(centres * MPP, 8)
    return {"spots": len(neighbors), "seconds_timed": time.perf_counter() - start}


GENES, DIM = 50, 1280  # the model's genes; efficientnet_lite0's feature width


def random_features(n: int, seed: int) -> np.ndarray:
    """(n, DIM) float32 standard normal features, drawn without a float64 copy."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, DIM), dtype=np.float32)


def bench_model(threads: int, device: str = "cpu"):
    """A paper-size STFlow fitted for one epoch on random 12 x 12 grids, and its calibration."""
    import torch

    from stflow.data.dataset import Slide
    from stflow.data.graph import knn_graph
    from stflow.intervals.calibration import calibrate
    from stflow.models.registry import build_estimator

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    small = np.stack(np.meshgrid(np.arange(12), np.arange(12)), -1).reshape(-1, 2) * 100.0

    def slide(name: str) -> Slide:
        counts = rng.poisson(1.0, (len(small), GENES)).astype(np.float32)
        return Slide(name, rng.normal(size=(len(small), DIM)).astype(np.float32), small,
                     np.array([f"{name}{i}" for i in range(len(small))]), np.log1p(counts),
                     counts, knn_graph(small, 8)[0])

    train, val = [slide("a")], [slide("b")]
    model = build_estimator("stflow", {"epochs": 1, "device": device})
    model.fit(train, val)
    return model, calibrate(model, train, val, seed=0)


def part_sampling(work: Path, threads: int, n_samples: int, chunk: int, device: str) -> dict:
    import torch

    from stflow.data.dataset import Slide
    from stflow.data.graph import knn_graph

    model, _ = bench_model(threads, device)
    coords = np.load(work / "centres.npy") * MPP
    target = Slide("s", random_features(len(coords), 1), coords,
                   np.arange(len(coords)).astype(str), neighbors=knn_graph(coords, 8)[0])
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    _, std = model.draw_moments(target, n_samples, chunk_spots=chunk, reuse_features=True)
    seconds = time.perf_counter() - start
    return {"spots": len(coords), "n_samples": n_samples, "device": device,
            "seconds_timed": seconds, "spread_mean": float(std.mean()),
            "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)
            if cuda else None}


def part_intervals(work: Path, threads: int, chunk: int) -> dict:
    from stflow.deploy.slide_rows import SlideRows
    from stflow.intervals.calibration import shift_scores

    _, calibration = bench_model(threads)
    n = len(np.load(work / "centres.npy"))
    features = random_features(n, 1)
    mean = np.random.default_rng(2).random((n, GENES), dtype=np.float32)
    start = time.perf_counter()
    scores = shift_scores(calibration, features, chunk)
    del features
    rows = SlideRows(mean, mean, calibration, scores, 0.9, [0, 1], chunk)
    for _ in rows:
        pass
    return {"spots": n, "seconds_timed": time.perf_counter() - start,
            "share_shifted": rows.intervals_record()["share_shifted"]}


def part_write(slide: str, work: Path, threads: int, chunk: int) -> dict:
    import pandas as pd

    from stflow.data.graph import knn_graph
    from stflow.data.patches import open_slide
    from stflow.data.spatial_image import HIRES_SIDE, spatial_uns
    from stflow.deploy.slide_maps import write_maps
    from stflow.deploy.slide_rows import SlideRows
    from stflow.inference.prediction_anndata import (
        ModelGraph,
        prediction_anndata,
        write_prediction,
    )
    from stflow.intervals.calibration import shift_scores

    _, calibration = bench_model(threads)
    centres = np.load(work / "centres.npy")
    n = len(centres)
    neighbors = knn_graph(centres * MPP, 8)[0]
    # shift scores of 65,536 random spots, repeated: the features of all would dwarf the rest
    scores = np.resize(shift_scores(calibration, random_features(min(n, 65536), 1)), n)
    rng = np.random.default_rng(2)
    mean = rng.random((n, GENES), dtype=np.float32)
    std = rng.random((n, GENES), dtype=np.float32)
    with open_slide(slide) as reader:
        thumb, scale = reader.thumbnail(HIRES_SIDE)
    genes = [f"G{i}" for i in range(GENES)]
    start = time.perf_counter()
    spatial = spatial_uns("s", thumb, scale, 8.0 / MPP, Path(slide))
    rows = SlideRows(mean, std, calibration, scores, 0.9, [0, 1], chunk)

    def rest():
        obs = pd.DataFrame({"tissue_fraction": np.ones(n, np.float32), **rows.obs},
                           index=pd.Index([f"s_{i}" for i in range(n)]))
        obsm = {"spatial": centres.astype(np.float64), "spatial_um": centres * MPP}
        return prediction_anndata(genes, obs, obsm, {"kind": "benchmark"},
                                  intervals=rows.intervals_record(),
                                  quantiles=rows.last.quantiles, spatial=spatial,
                                  graph=ModelGraph(neighbors, obsm["spatial_um"], "benchmark"))

    write_prediction(work / "s.h5ad", n, rows, rest)
    write_maps(work / "s_maps", genes[:2], genes[:2], mean[:, :2],
               (rows.second, rows.second_label()), centres, spatial, "s")
    return {"spots": n, "seconds_timed": time.perf_counter() - start,
            "h5ad_mb": round((work / "s.h5ad").stat().st_size / 1e6, 1)}


def write_store(path: Path, centres_um: np.ndarray, weights_sha256: str) -> None:
    """A features store as `stflow embed` writes one: random features, 65,536 rows at a time."""
    import zarr

    group = zarr.open_group(path, mode="w", zarr_format=3)
    n, step = len(centres_um), 65536
    features = group.create_array("features", shape=(n, DIM), chunks=(min(n, 4096), DIM),
                                  dtype="float32")
    for start in range(0, n, step):
        features[start:start + step] = random_features(min(step, n - start), start)
    barcode = group.create_array("barcode", shape=(n,), dtype=str)
    barcode[:] = np.array([f"s_{i}" for i in range(n)], dtype=object)
    group.create_array("coords_um", data=centres_um)
    group.attrs.update({"encoder": "efficientnet_lite0", "weights_sha256": weights_sha256,
                        "feature_dim": DIM, "um_per_px": MPP, "complete": True})


def part_whole(slide: str, work: Path, threads: int, n_samples: int, chunk: int) -> dict:
    from stflow.data.encoders import load_encoder
    from stflow.deploy.predict_slide import SlideOptions, predict_slides
    from stflow.intervals.calibration import save_calibration
    from stflow.models.registry import save_estimator
    from stflow.records.deployment import Deployment, write_deployment

    model, calibration = bench_model(threads)
    folder = work / "model"
    save_estimator("stflow", model, folder)
    save_calibration(calibration, folder)
    sha = load_encoder("efficientnet_lite0").weights_sha256
    write_deployment(folder, Deployment(
        model="stflow", genes=[f"G{i}" for i in range(GENES)], encoder="efficientnet_lite0",
        weights_sha256=sha, feature_dim=DIM, patch_size_um=PATCH_UM, patch_size_px=PATCH_PX,
        min_tissue=0.5, graph_k=8, pitch_um=8.0, layout="square", trained_on=["a"],
        fold="final"))
    centres = np.load(work / "centres.npy")
    write_store(work / "s.zarr", centres * MPP, sha)
    del model, centres
    start = time.perf_counter()
    result = predict_slides([slide], folder, out_dir=work / "whole", um_per_px=MPP,
                            features=work / "s.zarr", options=SlideOptions(
                                n_samples=n_samples, device="cpu", chunk_spots=chunk))[0]
    return {"spots": result.n_spots, "n_samples": n_samples,
            "seconds_timed": time.perf_counter() - start,
            "parts_s": {k: round(v, 1) for k, v in result.seconds.items()}}


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    chunk = args.chunk_spots or None
    if args.part == "tissue":
        out = part_tissue(args.slide, work, args.pitch_um, args.layout)
    elif args.part == "patches":
        out = part_patches(args.slide, work, args.threads)
    elif args.part == "embedding":
        out = part_embedding(args.slide, work, args.threads, args.embed_spots, args.device)
    elif args.part == "graph":
        out = part_graph(work)
    elif args.part == "sampling":
        out = part_sampling(work, args.threads, args.n_samples, chunk, args.device)
    elif args.part == "intervals":
        out = part_intervals(work, args.threads, chunk)
    elif args.part == "write":
        out = part_write(args.slide, work, args.threads, chunk)
    else:
        out = part_whole(args.slide, work, args.threads, args.n_samples, chunk)
    seconds = out.pop("seconds_timed")  # the work only, not the imports
    out.update(part=args.part, seconds=round(seconds, 2),
               spots_per_s=round(out["spots"] / seconds, 1), peak_rss_mb=round(peak_rss_mb(), 1))
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spots", type=int, default=3000, help="virtual spots wanted")
    parser.add_argument("--embed-spots", type=int, default=128,
                        help="spots embedded (CPU embedding of all is extrapolated)")
    parser.add_argument("--n-samples", type=int, default=8, help="flow samples")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pitch-um", type=float, default=100.0, help="lattice pitch (µm)")
    parser.add_argument("--layout", choices=("hex", "square"), default="hex")
    parser.add_argument("--chunk-spots", type=int, default=100_000,
                        help="predict-slide's --chunk-spots (0: one piece)")
    parser.add_argument("--device", default="cpu", help="embedding device (cpu or cuda)")
    parser.add_argument("--parts", nargs="+",
                        default=["tissue", "patches", "embedding", "graph", "sampling"],
                        choices=["tissue", "patches", "embedding", "graph", "sampling",
                                 "intervals", "write", "whole"])
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--slide", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="stflow-bench-") as tmp:
        work = Path(tmp)
        slide = work / "slide.tiff"
        side = side_for(args.spots, args.pitch_um, args.layout)
        start = time.perf_counter()
        write_slide(slide, side)
        print(json.dumps({"slide_px": side, "mpp": MPP, "file_mb": round(
            slide.stat().st_size / 1e6, 1), "write_s": round(time.perf_counter() - start, 1)}))
        parts = list(dict.fromkeys(["tissue", *args.parts]))  # the others need its spots
        total = {}
        for part in parts:
            result = subprocess.run(
                [sys.executable, __file__, "--part", part, "--slide", str(slide), "--work",
                 str(work), "--threads", str(args.threads), "--embed-spots",
                 str(args.embed_spots), "--n-samples", str(args.n_samples), "--pitch-um",
                 str(args.pitch_um), "--layout", args.layout, "--chunk-spots",
                 str(args.chunk_spots), "--device", args.device],
                capture_output=True, text=True, check=False)
            if result.returncode != 0:
                sys.exit(f"part {part} failed:\n{result.stderr[-3000:]}")
            line = json.loads(result.stdout.strip().splitlines()[-1])
            print(json.dumps(line))
            total[part] = line
        if "embedding" in total and "tissue" in total:
            n = total["tissue"]["spots"]
            print(json.dumps({"part": "embedding (all spots, extrapolated)", "spots": n,
                              "seconds": round(n / total["embedding"]["spots_per_s"], 1)}))


if __name__ == "__main__":
    main()
