"""Spot-based regression heads on the frozen features: the baselines STFlow is compared with.

All of them follow HEST-bench's preprocessing (``StandardScaler`` → ``PCA(256)`` on the
training spots, mahmoodlab/HEST ``src/hest/bench/benchmark.py``, ``predict_single_split``)
and then regress the log1p targets of every spot independently — except ``spatial_ridge``,
which also sees the mean features of each spot's neighbours.
Models that select nothing on validation (``ridge_hest``, the random forest) fit on train +
val, as HEST-bench fits on all non-test samples; the tuned ones (``ridge``, ``spatial_ridge``,
``mlp``) select on val, or without val slides on the hold-out STFlow uses
(:mod:`stflow.data.holdout`).

Everything is saved as plain arrays (``.npz`` read with ``allow_pickle=False``) plus a JSON
config; the random forest's trees are stored as node arrays and evaluated by numpy, so no
pickle is ever loaded. The forest file's sha256 is recorded and checked before use.
"""
