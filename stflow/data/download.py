"""The download stage: a data source's published files into RAW_DIR, checksummed, with
RAW_DIR/MANIFEST.tsv written last (its presence says the download finished)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from stflow.choices import HEST_REPO
from stflow.data.sources import get_source
from stflow.data.sources.fetch import write_manifest

log = logging.getLogger(__name__)


def download_source(source: str, out: str | Path, *, mirror: str | Path | None = None,
                    samples: Sequence[str] | None = None, repo_id: str = HEST_REPO,
                    task: str | None = None, patients: int = 3, sections: int = 2,
                    grid: int = 16, genes: int = 80, mpp: float = 2.0, seed: int = 0,
                    expression_shift: float = 1.0, stain_shift: float = 1.0,
                    sheet: str | Path | None = None) -> Path:
    """Fill ``out`` with the source's files (from ``mirror`` when given, else the network;
    synthetic: simulated with ``patients`` .. ``stain_shift``; sheet: the validated ``sheet``
    with absolute paths, the data stay in place), then write and return the manifest."""
    out = Path(out)
    given = {"mirror": mirror, "samples": list(samples) if samples else None,
             "repo_id": repo_id, "task": task, "patients": patients, "sections": sections,
             "grid": grid, "genes": genes, "mpp": mpp, "seed": seed,
             "expression_shift": expression_shift, "stain_shift": stain_shift, "sheet": sheet}
    found = get_source(source)
    found.download(out, **{k: v for k, v in given.items() if k in found.download_options})
    manifest = write_manifest(out)
    log.info("download complete: %s", manifest)
    return manifest
