"""What ``stflow ingest`` was given beyond the raw folder and the sample, and the refusals
shared by the sources that do not take an option.

Each source module turns these into its own ``read_sample`` keywords
(``read_options(sample, options)``), refusing what it does not take with a message that
names the source and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from stflow.errors import input_error


@dataclass(frozen=True)
class IngestOptions:
    """Facts a person may give at ingest for sources that do not know them."""

    image: str | None = None
    patient: str | None = None
    require_patient: bool = False
    task: str | None = None
    mpp: float | None = None
    inter_spot_um: float = 100.0
    row: dict | None = None


def refuse_sheet_row(source: str, options: IngestOptions) -> None:
    """Only the sheet source reads a sheet row."""
    if options.row is not None:
        raise input_error("stflow ingest", f"a sheet row does not apply to {source}",
                          "use source sheet")


def refuse_known_facts(source: str, options: IngestOptions) -> None:
    """A source that knows its image, patient and µm/px takes none of them (nor a row)."""
    refuse_sheet_row(source, options)
    if options.image or options.patient or options.mpp:
        raise input_error("stflow ingest", f"--image/--patient/--um-per-px do not apply to {source}",
                          "drop them; this source knows its image, patient and µm/px")
