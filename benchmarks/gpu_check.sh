#!/usr/bin/env bash
# The GPU path end to end, measured: a small simulated study (2 patients x 2 sections) run by
# the workflow with `device: cuda` (embed, train, predict on the GPU, one GPU job at a time),
# then patches/s of each embed job, seconds per STFlow training epoch and peak GPU memory
# (sampled with nvidia-smi while the run lasts); then predict-slide on a generated 40x slide
# of GPU_CHECK_SPOTS virtual spots (default 50000; benchmarks/predict_slide.py, each part in
# its own process): patches/s, its embedding rate over the bare forward on the same windows,
# sampling spots/s and peak GPU memory. About 5 + 5 minutes on one GPU; never part of CI.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]       (default: a new temporary folder)
#
# Prints a human summary and one JSON line; exits 2 without a usable CUDA GPU.
# GPU_CHECK_DEVICE=cpu rehearses the same run on the CPU (no memory figure; 300 spots, 64 of
# them embedded, unless GPU_CHECK_SPOTS / GPU_CHECK_EMBED_SPOTS say otherwise), to check the
# script itself on a machine without a GPU. GPU_CHECK_THREADS: window readers and CPU
# threads of predict-slide (default: all CPUs); GPU_CHECK_SLIDE_LIMIT_S: its time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
OUT="${1:-$(mktemp -d -t stflow-gpu-check.XXXXXX)}"
LIMIT_S="${GPU_CHECK_LIMIT_S:-280}"
mkdir -p "$OUT"

DEVICE="${GPU_CHECK_DEVICE:-cuda}"
if [ "$DEVICE" = cuda ] && { ! command -v nvidia-smi >/dev/null || ! "$PYTHON" -c \
    "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; }; then
  echo "gpu_check: no usable CUDA GPU (nvidia-smi and torch.cuda.is_available())" >&2
  exit 2
fi

cat > "$OUT/gpu_check.yaml" <<EOF
dataset: {name: gpucheck, source: synthetic, mirror: null, samples: null}
simulate: {patients: 2, sections: 2, grid: 20, genes: 80, seed: 0}
genes: {n_top: 50, list: null}
patches: {size_um: 112, size_px: 224, min_tissue: 0.5}
encoders: [efficientnet_lite0]
embed: {batch_size: 128}
models: [stflow]
model_params: {stflow: {epochs: 10, patience: 10}}
graph: {k: 8}
device: $DEVICE
threads: 4
seeds: [0]
EOF

# peak GPU memory (device-wide, CUDA contexts included), sampled every 200 ms into a CSV
SAMPLER=""
start_sampler() {
  : > "$1"
  SAMPLER=""
  if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
      > "$1" 2>/dev/null &
    SAMPLER=$!
  fi
}
stop_sampler() { if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null || true; fi; }
trap stop_sampler EXIT
start_sampler "$OUT/gpu_memory.csv"

started=$(date +%s)
timeout -k 10 "$LIMIT_S" "$PYTHON" -m snakemake --snakefile "$REPO/Snakefile" \
  --directory "$OUT" --configfile "$OUT/gpu_check.yaml" --profile "$REPO/profiles/local" \
  --cores all results/gpucheck/tables/metrics.tsv > "$OUT/snakemake.log" 2>&1 \
  || { echo "gpu_check: the run failed or passed ${LIMIT_S}s; see $OUT/snakemake.log" >&2;
       tail -30 "$OUT/snakemake.log" >&2; exit 1; }
wall=$(( $(date +%s) - started ))
stop_sampler

# predict-slide at scale, with its own memory sampler; a failure is reported after the summary
if [ "$DEVICE" = cuda ]; then SPOTS="${GPU_CHECK_SPOTS:-50000}"; else SPOTS="${GPU_CHECK_SPOTS:-300}"; fi
if [ "$DEVICE" = cuda ]; then EMBED_SPOTS="${GPU_CHECK_EMBED_SPOTS:-$SPOTS}"
else EMBED_SPOTS="${GPU_CHECK_EMBED_SPOTS:-$(( SPOTS < 64 ? SPOTS : 64 ))}"; fi
THREADS="${GPU_CHECK_THREADS:-$(nproc)}"
start_sampler "$OUT/slide_gpu_memory.csv"
slide_ok=1
PYTHONUNBUFFERED=1 timeout -k 10 "${GPU_CHECK_SLIDE_LIMIT_S:-420}" "$PYTHON" \
  benchmarks/predict_slide.py --spots "$SPOTS" --embed-spots "$EMBED_SPOTS" --device "$DEVICE" \
  --threads "$THREADS" --parts patches embedding sampling \
  > "$OUT/predict_slide.jsonl" 2> "$OUT/predict_slide.log" || slide_ok=0
stop_sampler

"$PYTHON" - "$OUT/results/gpucheck" "$OUT/gpu_memory.csv" "$wall" "$DEVICE" \
  "$OUT/predict_slide.jsonl" "$OUT/slide_gpu_memory.csv" <<'EOF'
"""Summarise: the jobs' own times, then warm in-process figures on the run's artifacts
(the jobs' times include starting Python and CUDA, which dominate on so small a study)."""
import json
import sys
import time
from pathlib import Path

import h5py
import pandas as pd
import torch

sys.path.insert(0, ".")  # the repository (the script runs from its root)
from stflow.data.dataset import load_slide  # noqa: E402
from stflow.data.embedding import iter_features  # noqa: E402
from stflow.data.encoders import load_encoder  # noqa: E402
from stflow.models.registry import build_estimator  # noqa: E402

root, memory_csv, wall, device = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
slide_jsonl, slide_memory_csv = Path(sys.argv[5]), Path(sys.argv[6])
dev = torch.device(device)
cuda = dev.type == "cuda"
samples = sorted(p.stem for p in (root / "patches").glob("*.h5"))


def sync() -> None:
    if cuda:
        torch.cuda.synchronize()


def peak_mib():
    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None


# the jobs as the workflow ran them (starting Python and CUDA included)
bench = root / "benchmarks"
jobs = {"embed_s": {s: float(pd.read_csv(bench / "embed" / "efficientnet_lite0" / f"{s}.tsv",
                                         sep="\t")["s"].iloc[0]) for s in samples},
        "train_s": {f.stem: float(pd.read_csv(f, sep="\t")["s"].iloc[0]) for f in sorted(
            (bench / "train" / "efficientnet_lite0" / "stflow" / "seed0").glob("*.tsv"))}}

# embedding: patches/s with the encoder loaded and warm, and its peak memory
images = []
for sample in samples:
    with h5py.File(root / "patches" / f"{sample}.h5", "r") as f:
        images.append(torch.from_numpy(f["img"][:]))
batches = list(torch.cat(images).split(128))
encoder = load_encoder("efficientnet_lite0")
for _ in iter_features(encoder, batches[:1], dev):  # warm-up
    pass
if cuda:
    torch.cuda.reset_peak_memory_stats()
sync()
start = time.perf_counter()
n = sum(len(f) for f in iter_features(encoder, batches, dev))
sync()
embed_rate = n / (time.perf_counter() - start)
embed_peak = peak_mib()

# STFlow training: seconds per epoch (a 6-epoch fit minus a 1-epoch fit: setup cancels out)
genes = json.loads((root / "genes.json").read_text())["genes"]
slides = [load_slide(s, root / "features" / "efficientnet_lite0" / f"{s}.zarr",
                     root / "st" / f"{s}.h5ad", genes, root / "graph" / f"{s}.npz")
          for s in samples]
times = {}
if cuda:
    torch.cuda.reset_peak_memory_stats()
for epochs in (1, 6):
    model = build_estimator("stflow", {"epochs": epochs, "patience": epochs, "k": 8}, seed=0,
                            device=device)
    sync()
    start = time.perf_counter()
    model.fit(slides[:-1], slides[-1:])
    sync()
    times[epochs] = time.perf_counter() - start
train_peak = peak_mib()



def device_peak(csv: Path):
    used = [int(x) for x in csv.read_text().split() if x.strip().isdigit()]
    return max(used) if used else None


# predict-slide at scale: the JSON lines of the parts that finished
parts = {}
for line in slide_jsonl.read_text().splitlines():
    record = json.loads(line)
    parts[record.get("part", "slide")] = record
embedding, sampling = parts.get("embedding", {}), parts.get("sampling", {})
predict_slide = {
    "spots": parts.get("tissue", {}).get("spots"),
    "slide_px": parts.get("slide", {}).get("slide_px"),
    "patches_read_per_s": parts.get("patches", {}).get("spots_per_s"),
    "embedded_spots": embedding.get("spots"), "readers": embedding.get("readers"),
    "embed_patches_per_s": embedding.get("embed_patches_per_s"),
    "bare_patches_per_s": embedding.get("bare_patches_per_s"),
    "embedding_ratio": embedding.get("ratio"),
    "sampling_spots_per_s": sampling.get("spots_per_s"), "n_samples": sampling.get("n_samples"),
    "peak_gpu_memory_mib": {"embed": embedding.get("peak_gpu_memory_mib"),
                            "sampling": sampling.get("peak_gpu_memory_mib"),
                            "device_during_run": device_peak(slide_memory_csv)},
    "peak_rss_mb": {p: r["peak_rss_mb"] for p, r in parts.items() if "peak_rss_mb" in r},
}
metrics = pd.read_csv(root / "tables" / "metrics.tsv", sep="\t")
summary = {
    "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    "wall_s": wall, "patches": n,
    "embed_patches_per_s": round(embed_rate, 1),
    "train_s_per_epoch": round((times[6] - times[1]) / 5, 3),
    "peak_gpu_memory_mib": {"embed": embed_peak, "train": train_peak,
                            "device_during_run": device_peak(memory_csv)},
    "pearson_mean": round(float(metrics["pearson_mean"].mean()), 4),
    "jobs": jobs,
    "predict_slide": predict_slide,
}
print(f"device: {summary['device']}; the workflow ran in {wall} s "
      f"(mean Pearson {summary['pearson_mean']})")
print(f"embed: {summary['embed_patches_per_s']} patches/s (efficientnet_lite0, warm, {n} patches)")
print(f"train: {summary['train_s_per_epoch']} s per STFlow epoch "
      f"({len(slides) - 1} training sections)")
print(f"peak GPU memory (MiB): {summary['peak_gpu_memory_mib']}")
print(f"predict-slide, {predict_slide['spots']} spots: {predict_slide['patches_read_per_s']} "
      f"patches/s read; embedding {predict_slide['embed_patches_per_s']} patches/s over "
      f"{predict_slide['embedded_spots']} spots ({predict_slide['readers']}) = "
      f"{predict_slide['embedding_ratio']} x the bare forward "
      f"({predict_slide['bare_patches_per_s']} patches/s); sampling "
      f"{predict_slide['sampling_spots_per_s']} spots/s ({predict_slide['n_samples']} samples); "
      f"peak GPU memory (MiB) {predict_slide['peak_gpu_memory_mib']}")
print(json.dumps(summary))
EOF
if [ "$slide_ok" = 0 ]; then
  echo "gpu_check: predict-slide's benchmark failed or passed its limit; see $OUT/predict_slide.log" >&2
  tail -30 "$OUT/predict_slide.log" >&2
  exit 1
fi
