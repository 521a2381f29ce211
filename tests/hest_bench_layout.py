"""A small HEST-Benchmark tree in the layout HEST publishes, for checking config/hest.yaml.

HEST-bench (huggingface.co/datasets/MahmoodLab/hest-bench) has one folder per task with
``splits/train_{k}.csv`` and ``splits/test_{k}.csv`` (columns ``sample_id``, ``patches_path``,
``expr_path``) and ``var_50genes.json``; HEST's own ``bench_config/bench_config.yaml`` lists
the nine tasks it benchmarks (IDC, PRAD, PAAD, SKCM, COAD, READ, CCRCC, LUNG, LYMPH_IDC).
The folder also ships a tenth task, HCC, which is not among them.

What is recorded here is what config/hest.yaml depends on: each task's sample ids and its
number of train/test pairs. Where the fold membership is known it is HEST's (leave one
sample out for the tasks with as many folds as samples; PRAD's two folds are its two
patients, MEND139-MEND153 and MEND154 + MEND156-MEND162, with no MEND155). COAD, READ and
CCRCC have fewer folds than samples and their grouping is not recorded here, so the fixture
deals their samples out in order: their sample sets and fold counts are HEST's, their
groupings are not (the workflow reads the real ones from the download).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

BENCH_CONFIG_TASKS = ["IDC", "PRAD", "PAAD", "SKCM", "COAD", "READ", "CCRCC", "LUNG",
                      "LYMPH_IDC"]
PRAD_PATIENT_1 = ["MEND154", *[f"MEND{i}" for i in range(156, 163)]]
PRAD_PATIENT_2 = [f"MEND{i}" for i in range(139, 154)]

# task -> (sample ids, number of train/test pairs in splits/)
TASKS: dict[str, tuple[list[str], int]] = {
    "IDC": (["NCBI783", "NCBI785", "TENX95", "TENX99"], 4),
    "PRAD": (sorted(PRAD_PATIENT_2 + PRAD_PATIENT_1, key=lambda s: int(s[4:])), 2),
    "PAAD": (["TENX116", "TENX126", "TENX140"], 3),
    "SKCM": (["TENX115", "TENX117"], 2),
    "COAD": (["TENX111", "TENX147", "TENX148", "TENX149"], 2),
    "READ": (["ZEN36", "ZEN40", "ZEN48", "ZEN49"], 2),
    "CCRCC": ([f"INT{i}" for i in range(1, 25)], 6),
    "HCC": (["NCBI642", "NCBI643"], 2),
    "LUNG": (["TENX118", "TENX141"], 2),
    "LYMPH_IDC": (["NCBI681", "NCBI682", "NCBI683", "NCBI684"], 4),
}


def fold_test_samples(task: str) -> list[list[str]]:
    """The test samples of each fold of ``task`` (see the module docstring)."""
    samples, n_folds = TASKS[task]
    if task == "PRAD":
        return [PRAD_PATIENT_1, PRAD_PATIENT_2]
    if n_folds == len(samples):
        return [[s] for s in samples]
    return [samples[k::n_folds] for k in range(n_folds)]


def write_bench_tree(root: Path) -> Path:
    """Write ``root/{task}/splits/*.csv`` and ``root/{task}/var_50genes.json`` for every task."""
    for task, (samples, _) in TASKS.items():
        splits = root / task / "splits"
        splits.mkdir(parents=True, exist_ok=True)
        for k, test in enumerate(fold_test_samples(task)):
            for name, ids in (("train", [s for s in samples if s not in test]), ("test", test)):
                pd.DataFrame({"sample_id": ids,
                              "patches_path": [f"patches/{s}.h5" for s in ids],
                              "expr_path": [f"adata/{s}.h5ad" for s in ids]}
                             ).to_csv(splits / f"{name}_{k}.csv", index=False)
        genes = [f"GENE{i}" for i in range(50)]
        (root / task / "var_50genes.json").write_text(json.dumps({"genes": genes}))
    return root
