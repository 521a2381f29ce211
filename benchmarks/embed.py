"""Speed and memory of patch extraction and embedding (prints one JSON line per figure).

    .venv/bin/python benchmarks/embed.py [--spots 400] [--embed-patches 256] [--threads 2]

- extraction patches/s and peak RSS from a generated 10,000 x 10,000 JPEG, measured in a
  child process, at 0.5 µm/px (decoded full size) and 0.25 µm/px (decoded at 1/2 by JPEG draft);
- embedding patches/s of stflow.data.embedding with efficientnet_lite0 on CPU, next to the bare model
  forward on the same (already preprocessed) batches in the same run, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIDE = 10_000


def make_jpeg(path: Path) -> None:
    """A 10k x 10k H&E-coloured JPEG with a smooth texture (generated in row strips)."""
    from PIL import Image

    image = Image.new("RGB", (SIDE, SIDE), (245, 245, 245))
    x = np.arange(SIDE)
    for top in range(0, SIDE, 1000):
        y = np.arange(top, top + 1000)[:, None]
        texture = (30 + 29 * np.sin(x / 17) * np.cos(y / 13)).astype(np.uint8)
        strip = np.stack([200 - texture // 2, 90 + texture, np.full_like(texture, 170)], -1)
        image.paste(Image.fromarray(strip), (0, top))
    image.save(path, quality=90)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def extract_child(jpeg: str, out: str, mpp: float, spots: int) -> None:
    """Run in a child process so its peak RSS is its own."""
    from stflow.data.patches import extract_patches

    side = int(np.sqrt(spots))
    grid = np.linspace(1000, SIDE - 1000, side)
    centres = np.array([(gx, gy) for gy in grid for gx in grid])
    start = time.perf_counter()
    summary = extract_patches(jpeg, centres, mpp=mpp,
                              barcodes=[f"s{i}" for i in range(len(centres))], out=out,
                              min_tissue=0.0, workers=2)
    seconds = time.perf_counter() - start
    peak_mb = peak_rss_mb()
    print(json.dumps({"benchmark": "extract_jpeg_10k", "mpp": mpp, "patches": summary.n_kept,
                      "seconds": round(seconds, 2),
                      "patches_per_s": round(summary.n_kept / seconds, 1),
                      "peak_rss_mb": round(peak_mb), "reader": summary.reader}))


def bench_embed(patches_h5: Path, n: int, batch_size: int, workdir: Path) -> None:
    import h5py
    import torch

    from stflow.data.embedding import embed
    from stflow.data.encoders import load_encoder

    with h5py.File(patches_h5, "r") as src, h5py.File(workdir / "sub.h5", "w") as dst:
        for key in ("img", "coords", "barcode"):
            dst.create_dataset(key, data=src[key][:n], compression="lzf" if key == "img" else None,
                               chunks=(1, *src["img"].shape[1:]) if key == "img" else None)
        dst.attrs.update(dict(src.attrs))
        images = src["img"][:n]
    encoder = load_encoder("efficientnet_lite0")
    batches = [encoder.preprocess(torch.from_numpy(images[i:i + batch_size]))
               for i in range(0, n, batch_size)]
    with torch.inference_mode():
        encoder.model(batches[0])  # warm-up
    rates = {}
    for round_ in range(2):  # interleave, so both see the same (shared) CPU load
        start = time.perf_counter()
        with torch.inference_mode():
            for x in batches:
                encoder.model(x)
        rates.setdefault("bare", []).append(n / (time.perf_counter() - start))
        start = time.perf_counter()
        embed(workdir / "sub.h5", encoder=encoder, out_zarr=workdir / f"f{round_}.zarr",
              batch_size=batch_size, device="cpu")
        rates.setdefault("pipeline", []).append(n / (time.perf_counter() - start))
    bare, pipeline = max(rates["bare"]), max(rates["pipeline"])
    print(json.dumps({"benchmark": "embed_efficientnet_lite0_cpu", "patches": n,
                      "batch_size": batch_size, "threads": torch.get_num_threads(),
                      "pipeline_patches_per_s": round(pipeline, 1),
                      "bare_forward_patches_per_s": round(bare, 1),
                      "ratio": round(pipeline / bare, 3)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spots", type=int, default=400)
    parser.add_argument("--embed-patches", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        jpeg, out, mpp, spots = args.child
        extract_child(jpeg, out, float(mpp), int(spots))
        return
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jpeg = work / "slide.jpg"
        make_jpeg(jpeg)
        for mpp in (0.5, 0.25):
            out = work / f"p{mpp}.h5"
            subprocess.run([sys.executable, __file__, "--child", str(jpeg), str(out), str(mpp),
                            str(args.spots)], check=True)
        bench_embed(work / "p0.5.h5", min(args.embed_patches, args.spots), args.batch_size, work)


if __name__ == "__main__":
    main()
