#!/usr/bin/env bash
# The GPU path end to end, measured: a small simulated study (2 patients x 2 sections) run by
# the workflow with `device: cuda` (embed, train, predict on the GPU, one GPU job at a time),
# then patches/s of each embed job, seconds per STFlow training epoch and peak GPU memory
# (sampled with nvidia-smi while the run lasts). Under 5 minutes on one GPU; never part of CI.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]       (default: a new temporary folder)
#
# Prints a human summary and one JSON line; exits 2 without a usable CUDA GPU.
# GPU_CHECK_DEVICE=cpu rehearses the same run on the CPU (no memory figure), to check the
# script itself on a machine without a GPU.
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

# peak GPU memory of the whole run (device-wide, CUDA contexts included), sampled every 200 ms
: > "$OUT/gpu_memory.csv"
SAMPLER=""
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
    > "$OUT/gpu_memory.csv" 2>/dev/null &
  SAMPLER=$!
fi
stop_sampler() { if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null || true; fi; }
trap stop_sampler EXIT

started=$(date +%s)
timeout -k 10 "$LIMIT_S" "$PYTHON" -m snakemake --snakefile "$REPO/Snakefile" \
  --directory "$OUT" --configfile "$OUT/gpu_check.yaml" --profile "$REPO/profiles/local" \
  --cores all results/gpucheck/tables/metrics.tsv > "$OUT/snakemake.log" 2>&1 \
  || { echo "gpu_check: the run failed or passed ${LIMIT_S}s; see $OUT/snakemake.log" >&2;
       tail -30 "$OUT/snakemake.log" >&2; exit 1; }
wall=$(( $(date +%s) - started ))
stop_sampler

"$PYTHON" - "$OUT/results/gpucheck" "$OUT/gpu_memory.csv" "$wall" <<'EOF'
"""Summarise the run: patches/s per embed job, s per epoch per training job, peak memory."""
import json
import sys
from pathlib import Path

import h5py
import pandas as pd

root, memory_csv, wall = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
bench = root / "benchmarks"
rates = []
for tsv in sorted((bench / "embed" / "efficientnet_lite0").glob("*.tsv")):
    with h5py.File(root / "patches" / f"{tsv.stem}.h5", "r") as f:
        n = f["img"].shape[0]
    seconds = float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
    rates.append({"sample": tsv.stem, "patches": n, "s": seconds, "patches_per_s": n / seconds})
epochs = []
for tsv in sorted((bench / "train" / "efficientnet_lite0" / "stflow" / "seed0").glob("*.tsv")):
    model = root / "models" / "efficientnet_lite0" / "stflow" / "seed0" / tsv.stem
    n_epochs = len(pd.read_csv(model / "history.tsv", sep="\t"))
    seconds = float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
    epochs.append({"fold": tsv.stem, "epochs": n_epochs, "train_s": seconds,
                   "s_per_epoch": seconds / max(n_epochs, 1)})
used = [int(x) for x in memory_csv.read_text().split() if x.strip().isdigit()]
metrics = pd.read_csv(root / "tables" / "metrics.tsv", sep="\t")
summary = {
    "wall_s": wall,
    "embed_patches_per_s": round(sum(r["patches"] for r in rates) / sum(r["s"] for r in rates), 1),
    "train_s_per_epoch": round(sum(e["train_s"] for e in epochs) / sum(e["epochs"] for e in epochs), 3),
    "peak_gpu_memory_mib": max(used) if used else None,
    "pearson_mean": round(float(metrics["pearson_mean"].mean()), 4),
    "embed": rates, "train": epochs,
}
print(f"embed: {summary['embed_patches_per_s']} patches/s (whole jobs, {len(rates)} sections)")
print(f"train: {summary['train_s_per_epoch']} s per STFlow epoch (whole jobs / epochs run)")
print(f"peak GPU memory: {summary['peak_gpu_memory_mib']} MiB (device-wide, nvidia-smi)")
print(f"wall: {wall} s; mean Pearson of the run: {summary['pearson_mean']}")
print(json.dumps(summary))
EOF
