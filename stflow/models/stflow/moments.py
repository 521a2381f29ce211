"""Running mean and standard deviation of flow samples, without stacking them.

A slide of a million spots and a thousand genes makes a 4 GB (N, G) prediction; stacking eight
samples to take their mean and std would hold 32 GB. Welford's update keeps two (N, G) arrays
whatever the number of samples and gives the stacked mean and ``std(ddof=1)`` to float
precision. They are float32 like the samples: a float64 pair would hold 800 MB, not 400,
at a million spots and 50 genes, while the next sample is drawn.
"""

from __future__ import annotations

import numpy as np


class RunningMoments:
    """Mean and sum of squared deviations of equally shaped arrays, updated one at a time."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def add(self, value: np.ndarray, chunk_rows: int | None = None) -> None:
        """Fold in one sample, ``chunk_rows`` rows at a time (None: all at once), so the
        temporaries are one chunk's, not the whole slide's."""
        value = np.asarray(value)
        self.count += 1
        if self.mean is None:
            self.mean = value.astype(np.float32)
            self._m2 = np.zeros_like(self.mean)
            return
        step = len(value) if not chunk_rows else chunk_rows
        for start in range(0, len(value), max(step, 1)):
            rows = slice(start, start + step)
            delta = value[rows] - self.mean[rows]
            self.mean[rows] += delta / self.count
            self._m2[rows] += delta * (value[rows] - self.mean[rows])

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std with ddof=1; 0 for a single sample), both float32."""
        if self.mean is None:
            raise ValueError("no samples were added")
        if self.count < 2:
            return self.mean, np.zeros_like(self.mean)
        m2, self._m2 = self._m2, None  # its memory becomes the std's
        np.divide(m2, self.count - 1, out=m2)
        np.sqrt(m2, out=m2)
        return self.mean, m2
