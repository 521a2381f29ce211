"""The synthetic source: simulated sections in the her2st layout, for offline runs and tests.

"Downloading" runs the simulator (``stflow.data.simulator.simulate``) into ``raw/`` and verifies
every file against the ``SHA256SUMS`` it writes; reading is the her2st reader (patient from
the ST-imgs folder, µm/px from the 200 µm spot grid), so the synthetic data exercises
exactly the code path of the real data.
"""

from __future__ import annotations

from pathlib import Path

from stflow.data.sources import her2st
from stflow.data.sources.fetch import CHECKSUMS, read_checksums, verify_file
from stflow.data.sources.ingest_form import IngestedSample
from stflow.data.sources.options import IngestOptions, refuse_known_facts
from stflow.errors import input_error


def download(raw_dir: str | Path, patients: int = 3, sections: int = 2, grid: int = 16,
             genes: int = 80, mpp: float = 2.0, seed: int = 0, expression_shift: float = 1.0,
             stain_shift: float = 1.0) -> Path:
    """Simulate sections into ``raw_dir`` and check them against the simulator's checksums."""
    from stflow.data.simulator import simulate

    raw_dir = Path(raw_dir)
    simulate(raw_dir, n_patients=patients, sections_per_patient=sections, grid=grid,
             n_genes=genes, mpp=mpp, seed=seed, expression_shift=expression_shift,
             stain_shift=stain_shift)
    sums = raw_dir / CHECKSUMS
    if not sums.is_file():
        raise input_error(sums, "the simulator wrote no checksum list",
                          "update stflow.data.simulator so it writes SHA256SUMS")
    for rel, expected in read_checksums(sums).items():
        verify_file(raw_dir / rel, expected, "delete the folder and simulate again")
    return raw_dir


def read_options(sample: str, options: IngestOptions) -> dict:
    """No ingest options: the simulator wrote image, patient and µm/px."""
    refuse_known_facts("synthetic", options)
    return {}


def list_samples(raw_dir: str | Path, config: dict | None = None) -> list[str]:
    """Section names from the simulated count files."""
    return her2st.list_samples(raw_dir, config)


def read_sample(raw_dir: str | Path, sample: str) -> IngestedSample:
    """One simulated section in the common ingest form (via the her2st reader)."""
    return her2st.read_sample(raw_dir, sample, source="synthetic")
