"""The download stage: a data source's published files into RAW_DIR, checksummed, with
RAW_DIR/MANIFEST.tsv written last (its presence says the download finished)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from stflow.choices import HEST_REPO
from stflow.data.sources.download import copy_tree, write_manifest
from stflow.errors import input_error

log = logging.getLogger(__name__)



def download_source(source: str, out: str | Path, *, mirror: str | Path | None = None,
                    samples: Sequence[str] | None = None, repo_id: str = HEST_REPO,
                    task: str | None = None, patients: int = 3, sections: int = 2,
                    grid: int = 16, genes: int = 80, mpp: float = 2.0, seed: int = 0,
                    sheet: str | Path | None = None) -> Path:
    """Fill ``out`` with the source's files (from ``mirror`` when given, else the network;
    synthetic: simulated with ``patients`` .. ``seed``; sheet: the validated ``sheet`` with
    absolute paths, the data stay in place), then write and return the manifest."""
    out = Path(out)
    samples = list(samples) if samples else None
    if source == "her2st":
        from stflow.data.sources import her2st

        her2st.download(out, mirror=mirror, samples=samples)
    elif source == "hest":
        from stflow.data.sources import hest

        hest.download(out, repo_id=repo_id, samples=samples, task=task, mirror=mirror)
    elif source == "sheet":
        from stflow.data.sources import sheet as sheet_source

        if sheet is None or mirror is not None:
            raise input_error("--sheet", "source sheet reads a sample sheet, not a mirror",
                              "pass --sheet path/to/samples.tsv (and no --mirror)")
        sheet_source.download(out, sheet, samples)
    elif source == "synthetic":
        from stflow.data.sources import synthetic

        synthetic.download(out, patients=patients, sections=sections, grid=grid, genes=genes,
                           mpp=mpp, seed=seed)
    else:
        if mirror is None:
            raise input_error("--mirror-dir", "visium has no public download",
                              "pass --mirror-dir DIR holding one Space Ranger outs/ folder per sample")
        copy_tree(Path(mirror), out, [f"{s}/*" for s in samples or []] or None,
                  "one Space Ranger outs/ folder per sample")
    manifest = write_manifest(out)
    log.info("download complete: %s", manifest)
    return manifest
