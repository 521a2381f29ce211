"""Speed and memory of predict-slide on a synthetic 40x slide (one JSON line per part).

    .venv/bin/python benchmarks/predict_slide.py [--spots 3000] [--embed-spots 128]
                                                 [--n-samples 8] [--threads 2]

A tiled, pyramidal TIFF at 0.25 µm/px (40x) is written on the fly from a few pre-encoded
tiles, sized so that the tissue (an ellipse) holds about ``--spots`` virtual spots on a 100 µm
hexagonal lattice; ``--spots 50000`` makes a ~100k x 100k px slide. Each part runs in its
own child process, so its peak RSS (VmHWM) is its own:

Seconds count the work only (not imports or model loading); peak RSS counts everything.

- tissue: thumbnail, tissue mask and virtual spots;
- patches: every 112 µm window read (224 px) and streamed in batches, nothing kept;
- embedding: efficientnet_lite0 on ``--embed-spots`` of those patches (CPU; the full count
  is extrapolated);
- graph: the kNN graph (k = 8) of all spots, by KD-tree;
- sampling: ``--n-samples`` flow samples of an STFlow model (paper size) over all spots.
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

MPP = 0.25
PITCH_UM = 100.0
TILE = 256
TISSUE_SHARE = 0.6  # of the image area, covered by the tissue ellipse
PATCH_UM, PATCH_PX = 112.0, 224
BARE_MAX = 4096  # windows held in memory for the bare forward (the first ones embedded)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def side_for(spots: int) -> int:
    """Level-0 side (px) of a square slide whose tissue holds about ``spots`` hex spots."""
    # 5% more: tile-sized steps on the tissue edge and the window filter lose some spots
    area_um2 = 1.05 * spots * PITCH_UM**2 * math.sqrt(3) / 2 / TISSUE_SHARE
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

def part_tissue(slide: str, work: Path) -> dict:
    from stflow.data.patches import open_slide, tissue_mask
    from stflow.deploy.spot_grid import SpotLayout, virtual_spots

    start = time.perf_counter()
    with open_slide(slide) as reader:
        thumb, scale = reader.thumbnail(2048)
        mask, _ = tissue_mask(np.asarray(thumb))
        spots = virtual_spots(mask, scale, reader.width, reader.height, MPP,
                              SpotLayout(PITCH_UM, "hex"), PATCH_UM, 0.5)
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


def part_sampling(work: Path, threads: int, n_samples: int) -> dict:
    import torch

    from stflow.data.dataset import Slide
    from stflow.data.graph import knn_graph
    from stflow.models.registry import build_estimator

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    genes, dim = 50, 1280

    def slide(coords: np.ndarray, name: str, targets: bool) -> Slide:
        n = len(coords)
        counts = rng.poisson(1.0, (n, genes)).astype(np.float32) if targets else None
        return Slide(name, rng.normal(size=(n, dim)).astype(np.float32), coords,
                     np.array([f"{name}{i}" for i in range(n)]),
                     None if counts is None else np.log1p(counts), counts,
                     knn_graph(coords, 8)[0])

    small = np.stack(np.meshgrid(np.arange(12), np.arange(12)), -1).reshape(-1, 2) * 100.0
    model = build_estimator("stflow", {"epochs": 1, "device": "cpu"})
    model.fit([slide(small, "a", True)], [slide(small, "b", True)])  # paper-size network
    coords = np.load(work / "centres.npy") * MPP
    target = slide(coords, "s", False)
    start = time.perf_counter()
    samples = model.sample_predictions([target], n_samples)[0]
    seconds = time.perf_counter() - start
    return {"spots": len(coords), "n_samples": n_samples, "seconds_timed": seconds,
            "spread_mean": float(samples.std(0).mean())}


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    if args.part == "tissue":
        out = part_tissue(args.slide, work)
    elif args.part == "patches":
        out = part_patches(args.slide, work, args.threads)
    elif args.part == "embedding":
        out = part_embedding(args.slide, work, args.threads, args.embed_spots, args.device)
    elif args.part == "graph":
        out = part_graph(work)
    else:
        out = part_sampling(work, args.threads, args.n_samples)
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
    parser.add_argument("--device", default="cpu", help="embedding device (cpu or cuda)")
    parser.add_argument("--parts", nargs="+",
                        default=["tissue", "patches", "embedding", "graph", "sampling"])
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
        side = side_for(args.spots)
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
                 str(args.embed_spots), "--n-samples", str(args.n_samples),
                 "--device", args.device],
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
