"""``predict-slide --features``: spots and their features from a store ``stflow embed`` wrote.

A user who embedded the slide elsewhere (on a GPU node, or with HEST's patches) predicts a
million spots without a CPU embedding. The store must come from the model's encoder with the
model's weights: features of other weights look alike and predict nonsense.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stflow.errors import input_error
from stflow.records.deployment import Deployment

EMBED_FIX = ("embed the slide's patches with the model's encoder and weights (`stflow embed "
             "--encoder {encoder}`), or use a model trained on these features")


@dataclass(frozen=True)
class FeatureStore:
    """A complete features store, checked but not yet read (its rows are counted)."""

    path: Path
    n_spots: int
    encoder: str
    weights_sha256: str

    def check_model(self, dep: Deployment) -> None:
        """Refuse features of another encoder, other weights or another width."""
        fix = EMBED_FIX.format(encoder=dep.encoder)
        if self.encoder != dep.encoder:
            raise input_error(self.path, f"holds '{self.encoder}' features, the model was "
                              f"trained on '{dep.encoder}' features", fix)
        if self.weights_sha256 != dep.weights_sha256:
            raise input_error(self.path, f"was embedded with weights sha256 "
                              f"{self.weights_sha256[:12]}…, the model with "
                              f"{dep.weights_sha256[:12]}…", fix)

    def read(self, feature_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features float32, coords_um (N, 2), barcodes) of every spot."""
        from stflow.data.dataset import read_features

        features, barcodes, coords = read_features(self.path)
        if features.shape[1] != feature_dim:
            raise input_error(self.path, f"has {features.shape[1]} features per spot, the "
                              f"model expects {feature_dim}", "re-embed with the model's encoder")
        return features, coords, barcodes


def open_feature_store(path: str | Path) -> FeatureStore:
    """Open a finished features store (metadata only); refuse one that is missing or
    unfinished."""
    import zarr

    path = Path(path)
    fix = "give a folder that `stflow embed` wrote (features/{encoder}/{sample}.zarr)"
    if not path.is_dir():
        raise input_error(path, "features store not found", fix)
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        n_spots = int(group["features"].shape[0])
    except Exception as err:  # zarr raises many kinds for a folder that is not a store
        raise input_error(path, f"is not a readable features store ({err})", fix) from err
    if attrs.get("complete") is not True:
        raise input_error(path, "features store is incomplete (an interrupted write)",
                          "delete it and run `stflow embed` again")
    return FeatureStore(path, n_spots, str(attrs.get("encoder")),
                        str(attrs.get("weights_sha256")))
