"""Latent tissue of one synthetic section: outline, domains, nuclear density, spot layout.

Everything lives on a coarse map (one cell = ``CELL_UM`` microns) so the image and the
expression read the same truth: the image is painted from the maps, the counts are drawn
from what each 100 µm spot covers on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DOMAINS = ("tumour", "stroma", "immune", "adipose")
DOMAIN_BIAS = np.array([0.35, 0.15, -0.05, -0.35])  # tumour most common, adipose rarest
GRID_UM = 200.0  # legacy ST: spot centres 200 µm apart
SPOT_RADIUS_UM = 50.0  # 100 µm spots
CELL_UM = 10.0  # resolution of the latent maps
DOMAIN_SCALE_UM = 130.0  # smoothing of the domain fields: patches a few spots across
MARGIN_STEPS = 1.0  # image border around the grid, in grid steps


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """White noise smoothed to correlation length ~``sigma`` cells, rescaled to unit std."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (field - field.mean()) / (field.std() + 1e-12)


@dataclass
class Tissue:
    """Latent maps of one section and where its spots sit."""

    mpp: float
    grid: int
    shape_px: tuple[int, int]  # (height, width) of the level-0 image
    domain: np.ndarray  # (h, w) int8 coarse domain labels
    density: np.ndarray  # (h, w) float, nuclear density multiplier (~0.6..1.6)
    tissue: np.ndarray  # (h, w) bool
    orientation: np.ndarray  # (h, w) float radians, stroma fibre direction
    array_xy: np.ndarray  # (N, 2) int grid positions of the listed (on-tissue) spots
    new_xy: np.ndarray  # (N, 2) float adjusted array positions (her2st new_x, new_y)
    pixel_xy: np.ndarray  # (N, 2) float spot centres in level-0 pixels (x = column)

    @property
    def spacing_px(self) -> float:
        return GRID_UM / self.mpp

    @property
    def cell_px(self) -> float:
        return CELL_UM / self.mpp

    def coarse_index(self, pixel_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) coarse-cell indices of level-0 pixel positions, clipped to the map."""
        rows = np.clip((pixel_xy[:, 1] / self.cell_px).astype(int), 0, self.domain.shape[0] - 1)
        cols = np.clip((pixel_xy[:, 0] / self.cell_px).astype(int), 0, self.domain.shape[1] - 1)
        return rows, cols

    def spot_composition(self) -> tuple[np.ndarray, np.ndarray]:
        """Per spot: fraction of each domain and mean density over its 100 µm disk."""
        r = int(np.ceil(SPOT_RADIUS_UM / CELL_UM))
        dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
        inside = (dx**2 + dy**2) * CELL_UM**2 <= SPOT_RADIUS_UM**2
        dy, dx = dy[inside], dx[inside]
        rows, cols = self.coarse_index(self.pixel_xy)
        rr = np.clip(rows[:, None] + dy[None], 0, self.domain.shape[0] - 1)
        cc = np.clip(cols[:, None] + dx[None], 0, self.domain.shape[1] - 1)
        labels = self.domain[rr, cc]
        on = self.tissue[rr, cc]
        fractions = np.stack([((labels == d) & on).mean(axis=1) for d in range(len(DOMAINS))], 1)
        fractions /= np.maximum(fractions.sum(axis=1, keepdims=True), 1e-9)
        density = np.where(on, self.density[rr, cc], 0.0).sum(1) / np.maximum(on.sum(1), 1)
        return fractions, density


def make_tissue(rng: np.random.Generator, grid: int, mpp: float) -> Tissue:
    """Draw outline, domains, density and fibre orientation; place spots on the tissue."""
    spacing_um = GRID_UM
    side_um = (grid - 1 + 2 * MARGIN_STEPS) * spacing_um
    side_px = int(np.ceil(side_um / mpp))
    n_cells = int(np.ceil(side_um / CELL_UM))
    shape = (n_cells, n_cells)

    fields = np.stack([smooth_field(rng, shape, DOMAIN_SCALE_UM / CELL_UM)
                       for _ in DOMAINS]) + DOMAIN_BIAS[:, None, None]
    domain = np.argmax(fields, axis=0).astype(np.int8)
    density = np.exp(0.25 * smooth_field(rng, shape, 60.0 / CELL_UM))
    orientation = np.pi * ndimage.gaussian_filter(rng.random(shape), 8.0)
    orientation = (orientation - orientation.min()) / (np.ptp(orientation) + 1e-9) * np.pi

    yy, xx = (np.mgrid[0:n_cells, 0:n_cells] + 0.5) / n_cells - 0.5
    radius = np.hypot(xx / 0.47, yy / 0.47)  # reaches the grid corners' neighbourhood
    wobble = smooth_field(rng, shape, n_cells / 8)
    tissue = (1.0 - radius**2) + 0.35 * wobble > 0.12
    labels, n = ndimage.label(tissue)
    if n > 1:  # keep one piece of tissue, as a section is one piece
        sizes = ndimage.sum(tissue, labels, index=np.arange(1, n + 1))
        tissue = labels == 1 + int(np.argmax(sizes))
    tissue = ndimage.binary_fill_holes(tissue)

    ax, ay = np.meshgrid(np.arange(grid), np.arange(grid))
    array_xy = np.column_stack([ax.ravel(), ay.ravel()]) + 1  # her2st arrays start near 1
    jitter = rng.normal(0.0, 0.02, size=array_xy.shape)  # grid fit residuals, as in real data
    new_xy = array_xy + jitter
    pixel_xy = (new_xy - 1 + MARGIN_STEPS) * (spacing_um / mpp)
    tissue_obj = Tissue(mpp=mpp, grid=grid, shape_px=(side_px, side_px), domain=domain,
                        density=density, tissue=tissue, orientation=orientation,
                        array_xy=array_xy, new_xy=new_xy, pixel_xy=pixel_xy)
    rows, cols = tissue_obj.coarse_index(pixel_xy)
    eroded = ndimage.binary_erosion(tissue, iterations=int(SPOT_RADIUS_UM / CELL_UM / 2))
    keep = eroded[rows, cols]
    tissue_obj.array_xy = array_xy[keep]
    tissue_obj.new_xy = new_xy[keep]
    tissue_obj.pixel_xy = pixel_xy[keep]
    return tissue_obj
