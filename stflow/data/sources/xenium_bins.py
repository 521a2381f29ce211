"""Square bins of a Xenium section, counted chunk by chunk.

Bin (row, col) covers ``[col·b, (col+1)·b) x [row·b, (row+1)·b)`` in Xenium µm, the lattice
anchored at the Xenium origin, so a section's bins do not depend on where its data happen to
start and every transcript (or cell centroid) falls in exactly one bin. A chunk of positions
is reduced to its distinct (bin, gene) keys at once; the partial counts are merged only as
they grow, so tens of millions of transcripts are counted without holding them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SHIFT = 21  # bits of a bin column in a key
OFFSET = 1 << (SHIFT - 1)  # a lattice index may run this far either side of the origin
MERGE_AT = 8_000_000  # pending keys that trigger a merge (about 130 MB)


class BinCounter:
    """Counts per (square bin, gene); :meth:`add` a chunk at a time, then :meth:`result`."""

    def __init__(self, bin_um: float, n_genes: int) -> None:
        if not (np.isfinite(bin_um) and bin_um > 0):
            raise ValueError(f"bin_um must be positive, got {bin_um!r}")
        self.bin_um = float(bin_um)
        self.n_genes = int(n_genes)
        self._keys = np.zeros(0, dtype=np.int64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, x_um: np.ndarray, y_um: np.ndarray, genes: np.ndarray,
            weights: np.ndarray | None = None) -> None:
        """Count a chunk: positions in µm, gene indices in ``[0, n_genes)``, and how many
        each entry counts (default one: a transcript)."""
        rows = np.floor(np.asarray(y_um, dtype=np.float64) / self.bin_um).astype(np.int64)
        cols = np.floor(np.asarray(x_um, dtype=np.float64) / self.bin_um).astype(np.int64)
        if rows.size and (max(np.abs(rows).max(), np.abs(cols).max()) >= OFFSET):
            raise ValueError(f"positions lie over {OFFSET} bins of {self.bin_um} µm from the "
                             "origin: not µm")
        keys = (((rows + OFFSET) << SHIFT) | (cols + OFFSET)) * self.n_genes + genes
        if weights is None:
            keys, counts = np.unique(keys, return_counts=True)
        else:
            keys, inverse = np.unique(keys, return_inverse=True)
            counts = np.bincount(inverse, weights=weights, minlength=len(keys))
        self._pending.append((keys, counts.astype(np.int64)))
        self._pending_size += len(keys)
        if self._pending_size > max(MERGE_AT, 2 * len(self._keys)):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *(k for k, _ in self._pending)])
        counts = np.concatenate([self._counts, *(c for _, c in self._pending)])
        self._keys, inverse = np.unique(keys, return_inverse=True)
        self._counts = np.bincount(inverse, weights=counts, minlength=len(self._keys)).astype(np.int64)
        self._pending, self._pending_size = [], 0

    def result(self) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
        """The bins that hold a count: lattice rows, columns (ascending by row, then column)
        and their counts (bins x genes, CSR)."""
        self._merge()
        keep = self._counts > 0
        keys, counts = self._keys[keep], self._counts[keep]
        bins, genes = np.divmod(keys, self.n_genes)
        unique_bins, row_of = np.unique(bins, return_inverse=True)
        matrix = sp.csr_matrix((counts, (row_of, genes)),
                               shape=(len(unique_bins), self.n_genes))
        rows = (unique_bins >> SHIFT) - OFFSET
        cols = (unique_bins & ((1 << SHIFT) - 1)) - OFFSET
        return rows, cols, matrix

    def centres_um(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(x, y) bin centres in Xenium µm."""
        return np.c_[(cols + 0.5) * self.bin_um, (rows + 0.5) * self.bin_um]
