"""Paint an H&E-like image from the latent tissue (Beer–Lambert mix of two stains).

Nuclei are soft ellipses whose density, size, shape and darkness follow the domain, so a
112 µm patch shows its domain to a frozen ImageNet CNN; eosin, fibres and fat vacuoles add
the texture around them. Each patient gets its own stain vectors (a batch shift).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from stflow.data.simulator.latent_tissue import CELL_UM, DOMAINS, Tissue

# Optical density of one unit of stain per RGB channel (Ruifrok & Johnston, scaled).
HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
EOSIN = np.array([0.07, 0.99, 0.11])
SHIFT = 0.2  # size of a patient's stain-vector shift (optical density units)


@dataclass(frozen=True)
class NucleusLook:
    """How a domain's nuclei look: per 1000 µm², radii in µm, darkness in stain units."""

    per_1000_um2: float
    major_um: float
    minor_um: float
    darkness: float
    eosin: float  # background cytoplasm/stroma stain


LOOKS = {
    "tumour": NucleusLook(3.6, 5.8, 4.6, 1.05, 0.20),
    "stroma": NucleusLook(0.8, 7.0, 1.8, 0.85, 0.32),
    "immune": NucleusLook(9.0, 3.0, 2.8, 1.35, 0.14),
    "adipose": NucleusLook(0.25, 4.5, 1.5, 0.80, 0.03),
}


@dataclass(frozen=True)
class Stain:
    """A patient's (and section's) stain: vectors and strengths."""

    haematoxylin: np.ndarray  # (3,) optical density per unit
    eosin: np.ndarray  # (3,)
    h_strength: float
    e_strength: float

    @classmethod
    def draw(cls, rng: np.random.Generator, scale: float = 1.0) -> Stain:
        """A stain shifted from the reference by a fixed amount in a random direction.

        The fixed size makes every patient's stain visibly its own (a batch effect).
        ``scale`` multiplies that size and the spread of the log strengths (1: the
        simulator's own, 0: the reference stain); the draws are the same whatever the scale.
        """
        def shifted(vector: np.ndarray) -> np.ndarray:
            step = rng.standard_normal(3)
            moved = np.clip(vector + SHIFT * scale * step / np.linalg.norm(step), 0.03, None)
            return moved / np.linalg.norm(moved) * np.linalg.norm(vector)

        return cls(shifted(HAEMATOXYLIN), shifted(EOSIN),
                   float(np.exp(rng.normal(0, 0.12) * scale)),
                   float(np.exp(rng.normal(0, 0.15) * scale)))

    def jittered(self, rng: np.random.Generator) -> Stain:
        """The same patient's stain on another day: small strength changes only."""
        return Stain(self.haematoxylin, self.eosin, self.h_strength * float(np.exp(rng.normal(0, 0.04))),
                     self.e_strength * float(np.exp(rng.normal(0, 0.04))))


def _upsample(coarse: np.ndarray, tissue: Tissue) -> np.ndarray:
    """A coarse map at level-0 resolution (nearest cell)."""
    h, w = tissue.shape_px
    rows = np.minimum((np.arange(h) / tissue.cell_px).astype(int), coarse.shape[0] - 1)
    cols = np.minimum((np.arange(w) / tissue.cell_px).astype(int), coarse.shape[1] - 1)
    return coarse[rows][:, cols]


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple) -> np.ndarray:
    """Smoothed float32 noise of unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / (field.std() + 1e-9)


def _splat(cy: np.ndarray, cx: np.ndarray, a: np.ndarray, b: np.ndarray, theta: np.ndarray,
           dark: np.ndarray, half: int, shape: tuple[int, int]) -> np.ndarray:
    """Flat image of soft ellipses (centre, semi-axes a >= b, angle, darkness) added up."""
    h, w = shape
    offs = np.arange(-half, half + 1)
    oy, ox = np.meshgrid(offs, offs, indexing="ij")
    py = np.floor(cy).astype(int)[:, None, None] + oy[None]
    px = np.floor(cx).astype(int)[:, None, None] + ox[None]
    du = px + 0.5 - cx[:, None, None]
    dv = py + 0.5 - cy[:, None, None]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u = (du * cos + dv * sin) / a[:, None, None]
    v = (-du * sin + dv * cos) / b[:, None, None]
    r = np.sqrt(u**2 + v**2)
    values = dark[:, None, None] / (1.0 + np.exp(-(1.0 - r) * b[:, None, None] / 0.6))
    ok = (py >= 0) & (py < h) & (px >= 0) & (px < w) & (values > 0.01)
    return np.bincount((py * w + px)[ok], weights=values[ok], minlength=h * w)


def _nuclei(rng: np.random.Generator, tissue: Tissue) -> np.ndarray:
    """Haematoxylin concentration map: soft ellipses splatted with one bincount per domain."""
    h, w = tissue.shape_px
    out = np.zeros(h * w, dtype=np.float64)
    cell_area = CELL_UM**2
    coarse_on = tissue.tissue
    for d, name in enumerate(DOMAINS):
        look = LOOKS[name]
        rate = look.per_1000_um2 * cell_area / 1000.0 * tissue.density
        rate = np.where(coarse_on & (tissue.domain == d), rate, 0.0)
        counts = rng.poisson(rate).ravel()
        cells = np.repeat(np.arange(counts.size), counts)
        if cells.size == 0:
            continue
        crow, ccol = np.divmod(cells, tissue.domain.shape[1])
        cy = (crow + rng.random(cells.size)) * tissue.cell_px
        cx = (ccol + rng.random(cells.size)) * tissue.cell_px
        scale = np.exp(np.clip(rng.normal(0, 0.18, cells.size), -0.5, 0.5))  # pleomorphism
        a = look.major_um / tissue.mpp * scale
        b = look.minor_um / tissue.mpp * scale * np.exp(rng.normal(0, 0.1, cells.size))
        if name == "stroma":
            theta = tissue.orientation[crow, ccol] + rng.normal(0, 0.2, cells.size)
        else:
            theta = rng.uniform(0, np.pi, cells.size)
        dark = look.darkness * np.exp(rng.normal(0, 0.12, cells.size))
        half = int(np.ceil(a.max() + 2))
        for chunk in np.array_split(np.arange(cells.size), max(1, cells.size // 1500)):
            out += _splat(cy[chunk], cx[chunk], a[chunk], b[chunk], theta[chunk],
                          dark[chunk], half, (h, w))
    nuclei = np.minimum(out.reshape(h, w), 1.6).astype(np.float32)
    return nuclei * (1.0 + 0.3 * _noise(rng, (h, w), 0.8))  # chromatin texture


def _eosin(rng: np.random.Generator, tissue: Tissue) -> np.ndarray:
    """Eosin concentration: per-domain level, stroma fibres, fat vacuole membranes."""
    h, w = tissue.shape_px
    levels = np.array([LOOKS[n].eosin for n in DOMAINS], dtype=np.float32)
    stroma = tissue.domain == DOMAINS.index("stroma")
    adipose = tissue.domain == DOMAINS.index("adipose")
    fibre_px = 1.0 / tissue.mpp
    weight_x = _upsample(np.where(stroma, np.cos(tissue.orientation) ** 2, 0.0), tissue)
    weight_y = _upsample(np.where(stroma, np.sin(tissue.orientation) ** 2, 0.0), tissue)
    fibres = (weight_x * _noise(rng, (h, w), (fibre_px, 6 * fibre_px))
              + weight_y * _noise(rng, (h, w), (6 * fibre_px, fibre_px)))
    level = ndimage.gaussian_filter(_upsample(levels[tissue.domain], tissue), tissue.cell_px)
    level = level * (1.0 + 0.35 * fibres)
    membrane = np.abs(_noise(rng, (h, w), 9.0 / tissue.mpp)) < 0.12  # a cell-wall network
    level = np.where(_upsample(adipose, tissue) & membrane, 0.22, level)
    return np.clip(level * (1.0 + 0.2 * _noise(rng, (h, w), 3.0 / tissue.mpp)), 0.0, None)


def render(rng: np.random.Generator, tissue: Tissue, stain: Stain) -> np.ndarray:
    """The (H, W, 3) uint8 RGB image of one section; white glass outside the tissue."""
    on = ndimage.gaussian_filter(_upsample(tissue.tissue.astype(np.float32), tissue), 1.5)
    haem = _nuclei(rng, tissue) * np.float32(stain.h_strength)
    eos = _eosin(rng, tissue) * np.float32(stain.e_strength) * on
    density = (haem[..., None] * stain.haematoxylin.astype(np.float32)
               + eos[..., None] * stain.eosin.astype(np.float32))
    rgb = 252.0 * np.exp(-np.log(10.0, dtype=np.float32) * density)
    rgb += 2.5 * rng.standard_normal(rgb.shape, dtype=np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)
