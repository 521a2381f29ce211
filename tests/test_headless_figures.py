"""Drawing figures never switches the caller's matplotlib backend, and still renders headless."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import matplotlib
matplotlib.use("svg")  # a notebook's choice: not Agg, and available without a display
calls = []
matplotlib.use = lambda *a, **k: calls.append(a)

import numpy as np
import pandas as pd
import stflow.deploy.slide_maps as slide_maps
import stflow.evaluation.figures as figures

out = sys.argv[1]
metrics = pd.DataFrame({"encoder": ["e"] * 2, "model": ["ridge", "stflow"],
                        "fold": ["fold0"] * 2, "pearson_mean": [0.1, 0.2]})
figures.comparison_chart(metrics, out + "/comparison.png")
image = np.full((40, 60, 3), 200, np.uint8)
spatial = {"s": {"images": {"hires": image},
                 "scalefactors": {"tissue_hires_scalef": 0.1, "spot_diameter_fullres": 50.0}}}
centres = np.array([[100.0, 100.0], [300.0, 200.0]])
slide_maps.write_maps(out + "/maps", ["G"], ["G"], np.ones((2, 1)), (np.ones((2, 1)), "width"),
                      centres, spatial, "s")
assert not calls, f"matplotlib.use was called: {calls}"
print(matplotlib.get_backend())
"""


def test_figures_render_headless_without_switching_the_backend(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().lower() == "svg"
    for png in (tmp_path / "comparison.png", tmp_path / "maps" / "G.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_predicting_a_slide_loads_neither_the_run_figures_nor_pyplot():
    script = ("import sys, stflow.deploy.predict_slide; "
              "print(sorted({'stflow.evaluation.figures', 'matplotlib.pyplot'} & set(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
