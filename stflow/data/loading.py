"""What a training or prediction run reads besides its samples: the target genes, the joined
`Slide` objects and the identity of the features they were made from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from stflow.atomic import read_json
from stflow.data.dataset import Slide, load_slide
from stflow.errors import input_error

log = logging.getLogger(__name__)


def read_genes(genes_path: str | Path, *, biomarkers: bool = True) -> list[str]:
    """The ordered target genes of a genes.json: its benchmark "genes", then (unless
    ``biomarkers`` is False) its "biomarkers", trained too but scored apart."""
    genes_path = Path(genes_path)
    data = read_json(genes_path, "genes file", "run `stflow genes` first")
    try:
        genes = [str(g) for g in data["genes"]]
        extra = [str(g) for g in data.get("biomarkers") or []] if biomarkers else []
    except (KeyError, TypeError, AttributeError) as err:
        raise input_error(genes_path, f"not a genes.json ({err})",
                          "re-create it with `stflow genes`") from err
    if not genes:
        raise input_error(genes_path, "the gene list is empty",
                          "choose genes expressed in every sample")
    return genes + [g for g in extra if g not in genes]


def read_biomarkers(genes_path: str | Path) -> list[str]:
    """The genes.json's "biomarkers": targets outside the benchmark, which the predictions
    mark so that evaluate scores them apart from the benchmark mean."""
    benchmark = set(read_genes(genes_path, biomarkers=False))
    return [g for g in read_genes(genes_path) if g not in benchmark]


def read_gene_scope(genes_path: str | Path) -> str:
    """How a genes.json's genes were chosen (:func:`stflow.data.genes.gene_scope`), carried
    into the prediction files so every score says its gene protocol."""
    from stflow.data.genes import gene_scope

    return gene_scope(read_json(genes_path, "genes file", "run `stflow genes` first"),
                      genes_path)


def load_slides(samples: list[str], genes: list[str], st_dir: str | Path,
                features_dir: str | Path, graph_dir: str | Path | None) -> list[Slide]:
    """Load each sample's features, counts of ``genes`` and (optionally) kNN graph."""
    slides = []
    for sample in tqdm(samples, desc="loading slides", disable=len(samples) < 2):
        graph = Path(graph_dir) / f"{sample}.npz" if graph_dir is not None else None
        slides.append(load_slide(sample, Path(features_dir) / f"{sample}.zarr",
                                 Path(st_dir) / f"{sample}.h5ad", genes, graph))
    return slides


def features_identity(features_dir: str | Path, samples: list[str]) -> dict[str, Any]:
    """The encoder and weights checksum of the samples' feature stores (zarr attributes).

    All stores of one training run must agree; a model trained on one encoder's features
    predicts nonsense (or crashes on the width) from another's.
    """
    import zarr

    found: dict[str, Any] | None = None
    for sample in samples:
        path = Path(features_dir) / f"{sample}.zarr"
        try:
            attrs = dict(zarr.open_group(str(path), mode="r").attrs)
        except (zarr.errors.GroupNotFoundError, FileNotFoundError) as err:
            raise input_error(path, "features store does not exist or is not a zarr group",
                              "run the embed stage for this sample") from err
        identity = {key: attrs.get(key) for key in FEATURE_KEYS}
        if found is None:
            found = identity
        elif identity != found:
            raise input_error(path, f"was made by {identity}, other samples by {found}",
                              "re-run embed so every sample uses the same encoder and weights")
    return found or dict.fromkeys(FEATURE_KEYS)


FEATURE_KEYS = ("encoder", "weights_sha256")  # zarr attributes that name what made features
