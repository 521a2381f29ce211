"""``--max-spots``: refuse a slide with too many spots before any work is done on it.

A 2 µm lattice over a whole slide is tens of millions of spots; finding that out after an
hour of embedding, or when memory runs out, helps nobody. The lattice's count is estimated
from the tissue mask's area before the lattice is built, given spots and features are
counted as rows.
"""

from __future__ import annotations

import numpy as np

from stflow.deploy.spot_grid import HEX_ROW, SpotLayout
from stflow.errors import input_error


def tissue_area_um2(mask: np.ndarray, scale: float, mpp: float) -> float:
    """The area of the tissue ``mask`` in µm² (``scale``: level-0 pixels per mask pixel)."""
    return float(np.count_nonzero(mask)) * (scale * mpp) ** 2


def lattice_estimate(mask: np.ndarray, scale: float, mpp: float, layout: SpotLayout) -> int:
    """About how many lattice spots the tissue ``mask`` holds (``scale``: level-0 pixels
    per mask pixel): its area over one lattice cell's."""
    area_um2 = tissue_area_um2(mask, scale, mpp)
    cell_um2 = layout.pitch_um ** 2 * (HEX_ROW if layout.layout == "hex" else 1.0)
    return int(round(area_um2 / cell_um2))


def check_spot_count(where: str, n_spots: int, limit: int | None, what: str,
                     given: bool = False) -> None:
    """Refuse ``n_spots`` above ``limit`` (None or 0: no limit), naming how it was counted;
    the fix for ``given`` spots is fewer of them, for a lattice a coarser pitch."""
    if limit and n_spots > limit:
        fewer = ("give fewer spots (coarser bins)" if given else "give a coarser --pitch-um "
                 "(the count falls with the square of the pitch)")
        raise input_error(where, f"{what} {n_spots:,} spots, more than --max-spots {limit:,}",
                          f"raise --max-spots if the machine has the memory and time for them "
                          f"(memory and time grow with the count), or {fewer}")
