"""Slides of a simulated study with *oracle* features: what a perfect image encoder would see.

Each spot's feature vector is a fixed random linear map of its true morphology (domain
fractions, nuclear density) plus noise, in place of a frozen foundation model's embedding.
Receiver genes depend on the neighbours' ligands, which a spot's own morphology does not
show, so these slides separate what spatial context adds from what the encoder gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stflow.data.dataset import Slide


def oracle_slides(root: Path, dim: int = 64, noise: float = 0.5, seed: int = 0
                  ) -> dict[str, Slide]:
    """One :class:`Slide` per section of a study written by :func:`stflow.data.simulator.simulate`."""
    from stflow.data.sources import get_source

    source = get_source("synthetic")
    rng = np.random.default_rng(seed)
    projection = None
    slides = {}
    for sample in source.list_samples(root):
        ingested = source.read_sample(root, sample)
        truth = np.load(Path(root) / "truth" / f"{sample}.npz")
        row = {barcode: i for i, barcode in enumerate(truth["barcode"])}
        order = np.array([row[b] for b in ingested.counts.obs_names])
        morphology = np.c_[truth["domain_fraction"][order], truth["density"][order]]
        if projection is None:
            projection = rng.normal(size=(morphology.shape[1], dim))
        features = morphology @ projection + rng.normal(scale=noise, size=(len(order), dim))
        counts = np.asarray(ingested.counts.X.todense(), dtype=np.float32)
        slides[sample] = Slide(sample, features.astype(np.float32),
                               ingested.spatial_px * ingested.mpp,
                               np.asarray(ingested.counts.obs_names), np.log1p(counts), counts)
    return slides


def gene_roles(root: Path) -> np.ndarray:
    """(G,) role of each simulated gene (marker:<domain>, ligand, receiver, ...)."""
    samples = sorted((Path(root) / "truth").glob("*.npz"))
    return np.load(samples[0])["gene_role"]
