"""The ingest stage: one sample of a source's raw folder to ``st/{sample}.h5ad``, and the
samples table (sample, patient, image, µm/px) of every ingested sample."""

from __future__ import annotations

from pathlib import Path

from stflow.data.sources import get_source, write_samples_tsv, write_st
from stflow.errors import input_error

__all__ = ["ingest_sample", "write_samples_tsv"]


def ingest_sample(source: str, raw: str | Path, sample: str, out: str | Path, *,
                  image: str | None = None, patient: str | None = None,
                  require_patient: bool = False, task: str | None = None,
                  mpp: float | None = None, inter_spot_um: float = 100.0,
                  row: dict | None = None) -> Path:
    """Read ``sample`` of ``source`` from ``raw`` and write ``out``. ``image``, ``patient``
    and ``mpp`` apply to the sources that do not know them (visium, hest); with
    ``require_patient`` a sample of unknown patient is refused (it would leak across folds).
    ``row`` is the sample's sheet row (source sheet; default: its row in raw/sheet.tsv)."""
    options: dict = {}
    if row is not None and source != "sheet":
        raise input_error("stflow ingest", f"a sheet row does not apply to {source}",
                          "use source sheet")
    if source == "sheet":
        if image or patient or mpp:
            raise input_error("stflow ingest", "--image/--patient/--mpp do not apply to sheet",
                              "give them in the sample sheet's image, patient and um_per_px "
                              "columns")
        options = {"row": row}
    elif source == "visium":
        config = {"patients": {sample: patient}} if patient else None
        options = {"image": image, "config": config}
        if require_patient and not patient:
            raise input_error(f"stflow ingest --sample {sample}", "visium sections carry "
                              "no patient id, so patient-stratified folds could leak",
                              "map the sample to its patient (dataset.patients in the config, "
                              "--patient here)")
    elif source == "hest":
        if image:
            raise input_error("stflow ingest", "--image does not apply to hest",
                              "drop it; the sample's image comes with the download")
        options = {"config": {"task": task, "mpp": mpp, "inter_spot_um": inter_spot_um,
                              "patients": {sample: patient} if patient else {},
                              "require_patient": require_patient}}
    elif image or patient or mpp:
        raise input_error("stflow ingest", f"--image/--patient/--um-per-px do not apply to {source}",
                          "drop them; this source knows its image, patient and µm/px")
    return write_st(get_source(source).read_sample(Path(raw), sample, **options), out)
