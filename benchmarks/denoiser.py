"""Speed and memory of the STFlow denoiser: forward pass, full-slide sampling, a training epoch.

    python benchmarks/denoiser.py --spots 2000 [--genes 50 --dim 1024] [--train-epoch]
                                  [--reference | --no-reference] [--repeats 3]

Prints one JSON object per line. Sampling includes the kNN graph and the geometry. Up to
20,000 spots on the CPU (or with ``--reference``, CPU only) the same sample is also drawn by the plain
implementation of ``benchmarks/plain_denoiser.py`` in the same run, with the same weights
and prior draws: ``reference_sample_s``, ``ratio`` (ours / plain) and ``max_abs_diff``
between the two samples. Times are the fastest of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stflow.data.dataset import Slide
from stflow.data.graph import knn_graph
from stflow.models.stflow.estimator import STFlowEstimator
from stflow.models.stflow.networks import build_denoiser, prepare_geometry
from stflow.models.stflow.priors import make_prior
from stflow.models.stflow.settings import STFlowSettings
from stflow.models.stflow.trainer import SlideArrays, predict_arrays

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_denoiser import plain_sample  # noqa: E402

REFERENCE_MAX_SPOTS = 20_000  # the plain implementation holds an N×N distance matrix


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def random_slide(n_spots: int, dim: int, genes: int, seed: int) -> Slide:
    """Spots on a jittered 100 µm grid with random features and Poisson counts."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_spots)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n_spots]
    coords = grid * 100.0 + rng.uniform(-10, 10, size=grid.shape)
    features = rng.normal(size=(n_spots, dim)).astype(np.float32)
    counts = rng.poisson(1.0, size=(n_spots, genes)).astype(np.float32)
    return Slide(f"s{seed}", features, coords, np.array([str(i) for i in range(n_spots)]),
                 np.log1p(counts), counts)


def bench_inference(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    slide = random_slide(args.spots, args.dim, args.genes, 0)
    model = build_denoiser("fa", args.dim, args.genes).to(device).eval()
    neighbors, _ = knn_graph(slide.coords_um, 8)
    geometry = prepare_geometry(slide.coords_um, neighbors).to(device)
    features = torch.from_numpy(slide.features)[None].to(device)
    y_t = torch.zeros(1, args.spots, args.genes, device=device)
    with torch.inference_mode():
        model(features, y_t, torch.zeros(1, device=device), geometry, chunk_size=args.chunk)
        start = time.perf_counter()
        model(features, y_t, torch.zeros(1, device=device), geometry, chunk_size=args.chunk)
        forward_s = time.perf_counter() - start
    config = STFlowSettings(chunk_size=args.chunk)
    arrays = SlideArrays(slide.sample, slide.features, slide.coords_um)
    prior = make_prior("zinb")
    sample_s, sampled = fastest(args.repeats, lambda: predict_arrays(
        model, prior, arrays, args.genes, config, device, torch.Generator().manual_seed(0)))
    result = {"spots": args.spots, "genes": args.genes, "dim": args.dim, "device": str(device),
              "threads": torch.get_num_threads(), "forward_s": round(forward_s, 4),
              "sample_s": round(sample_s, 4)}
    reference = args.reference if args.reference is not None else (
        args.spots <= REFERENCE_MAX_SPOTS and device.type == "cpu")
    if reference:
        if device.type != "cpu":
            sys.exit("--reference runs on the CPU only (drop --device or --reference)")
        with torch.inference_mode():
            reference_s, plain = fastest(args.repeats, lambda: plain_sample(
                model, torch.from_numpy(slide.features).to(device),
                torch.from_numpy(slide.coords_um), prior, args.genes, config.k, config.steps,
                torch.Generator().manual_seed(0), config.length_scale_um))
        result.update(reference_sample_s=round(reference_s, 4),
                      ratio=round(sample_s / reference_s, 3),
                      max_abs_diff=float(np.abs(sampled - plain.numpy()).max()))
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def fastest(repeats: int, run):
    """(fastest seconds, last result) of ``repeats`` calls of ``run``."""
    best, result = float("inf"), None
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_train_epoch(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """One epoch (with its validation pass) on five sections of about 200 spots."""
    slides = [random_slide(200, args.dim, args.genes, seed) for seed in range(5)]
    estimator = STFlowEstimator(seed=0, epochs=1, device=str(device))
    start = time.perf_counter()
    estimator.fit(slides[:4], slides[4:])
    return {"train_epoch_s": round(time.perf_counter() - start, 3), "sections": 5,
            "spots_per_section": 200, "device": str(device),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spots", type=int, default=2000)
    parser.add_argument("--genes", type=int, default=50)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=8192, help="spots per edge chunk")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-epoch", action="store_true", help="also time one epoch")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=None,
                        help="also time the plain implementation (default: up to "
                        f"{REFERENCE_MAX_SPOTS} spots)")
    parser.add_argument("--repeats", type=int, default=3, help="runs timed; the fastest "
                        "is reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(json.dumps(bench_inference(args, device)), flush=True)
    if args.train_epoch:
        print(json.dumps(bench_train_epoch(args, device)), flush=True)


if __name__ == "__main__":
    main()
