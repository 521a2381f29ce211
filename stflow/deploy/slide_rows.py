"""A slide's (N, G) outputs made a row chunk at a time from its mean and spread.

The mean and the samples' spread are the only whole-slide (N, G) arrays predict-slide holds;
the calibrated intervals (and a per-gene scale) are computed for one chunk of spots, written,
and dropped. What the rest of the file and the maps need is kept as it goes: the per-spot
columns (shift score, flag, scale) and the drawn genes' columns.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence

import numpy as np

from stflow.intervals.calibration import Calibration, SpotIntervals, spot_intervals


class SlideRows:
    """Yields ``(rows, {"X", "sample_std", "lower", ...: block})``; afterwards holds the
    per-spot columns, the intervals' record and the maps' values."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, calibration: Calibration | None,
                 shift_scores: np.ndarray | None, level: float, drawn: Sequence[int],
                 chunk_spots: int | None) -> None:
        self.mean, self.std = mean, std
        self.calibration, self.shift_scores, self.level = calibration, shift_scores, level
        self.drawn = list(drawn)
        self.step = max(chunk_spots or len(mean), 1)
        self.obs: dict[str, np.ndarray] = {}
        self.second = np.zeros((len(mean), len(self.drawn)), np.float32)  # maps' 2nd panel
        self.last: SpotIntervals | None = None  # its quantiles and info are the slide's
        self.interval_seconds = 0.0

    def __iter__(self) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(self.mean), self.step):
            rows = slice(start, start + self.step)
            blocks = {"X": self.mean[rows], "sample_std": self.std[rows]}
            if self.calibration is None:
                self.second[rows] = self.std[rows][:, self.drawn]
            else:
                clock = time.perf_counter()
                self.last = spot_intervals(self.calibration, self.shift_scores[rows],
                                           self.mean[rows], self.level)
                self.interval_seconds += time.perf_counter() - clock
                blocks.update(self.last.layers())
                self.second[rows] = (self.last.upper - self.last.lower)[:, self.drawn]
                for name, column in self.last.obs_columns().items():
                    parts.setdefault(name, []).append(column)
            yield rows, blocks
        self.obs = {name: np.concatenate(columns) for name, columns in parts.items()}

    def second_label(self) -> str:
        """What the maps draw beside the mean: the calibrated interval's width, or, for a
        model saved without calibration, the samples' spread labelled as uncalibrated."""
        if self.last is None:
            return "sample spread (uncalibrated std)"
        whom = ("calibrated across patients" if self.last.info.get("calibration") == "patient"
                else "calibrated within the training patients")
        return f"{self.last.info['level']:.0%} interval width ({whom})"

    def intervals_record(self) -> dict | None:
        """``uns["stflow"]["intervals"]`` over the whole slide (None without calibration)."""
        if self.last is None:
            return None
        return dataclasses.replace(self.last, shifted=self.obs["shifted"]).uns_info()
