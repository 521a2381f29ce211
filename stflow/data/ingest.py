"""The ingest stage: one sample of a source's raw folder to ``st/{sample}.h5ad``, and the
samples table (sample, patient, image, µm/px) of every ingested sample."""

from __future__ import annotations

from pathlib import Path

from stflow.data.sources import IngestOptions, get_source, write_samples_tsv, write_st

__all__ = ["ingest_sample", "write_samples_tsv"]


def ingest_sample(source: str, raw: str | Path, *, sample: str, out: str | Path,
                  image: str | None = None, patient: str | None = None,
                  require_patient: bool = False, task: str | None = None,
                  mpp: float | None = None, inter_spot_um: float = 100.0,
                  row: dict | None = None) -> Path:
    """Read ``sample`` of ``source`` from ``raw`` and write ``out``. ``image``, ``patient``
    and ``mpp`` apply to the sources that do not know them (visium, hest); with
    ``require_patient`` a sample of unknown patient is refused (it would leak across folds).
    ``row`` is the sample's sheet row (source sheet; default: its row in raw/sheet.tsv)."""
    found = get_source(source)
    given = IngestOptions(image=image, patient=patient, require_patient=require_patient,
                          task=task, mpp=mpp, inter_spot_um=inter_spot_um, row=row)
    return write_st(found.read_sample(Path(raw), sample, **found.read_options(sample, given)), out)
