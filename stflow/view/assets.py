"""OpenSeadragon, copied into every view so that the page opens with no network.

The package comes from the npm registry, fetched once by ``make openseadragon`` into the
repository's git-ignored ``.cache/`` and checked against a pinned SHA-256 (Makefile); it is
never committed and never fetched by the page. ``$STFLOW_OPENSEADRAGON`` names another copy
(the ``build/openseadragon`` folder of the npm package) for an installed stflow.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from stflow.errors import input_error

OPENSEADRAGON_VERSION = "6.1.1"  # the Makefile's OSD_VERSION (tests/test_view.py checks)
REPOSITORY = Path(__file__).resolve().parents[2]
STATIC = Path(__file__).resolve().parent / "static"


def openseadragon_dir() -> Path:
    """The ``build/openseadragon`` folder of the npm package: ``openseadragon.min.js`` and
    ``images/`` (the navigation buttons)."""
    given = os.environ.get("STFLOW_OPENSEADRAGON")
    if given:
        return Path(given)
    return (REPOSITORY / ".cache" / f"openseadragon-{OPENSEADRAGON_VERSION}" / "build"
            / "openseadragon")


def copy_openseadragon(out_dir: Path) -> None:
    """Copy ``openseadragon.min.js`` and its ``images/`` into ``out_dir/openseadragon``."""
    source = openseadragon_dir()
    script = source / "openseadragon.min.js"
    if not script.is_file() or not (source / "images").is_dir():
        raise input_error(script, f"OpenSeadragon {OPENSEADRAGON_VERSION} is not installed "
                          "(the view ships it so that the page needs no network)",
                          "run `make openseadragon` in the stflow repository (needs npm), or "
                          "set STFLOW_OPENSEADRAGON to the build/openseadragon folder of the "
                          f"npm package openseadragon@{OPENSEADRAGON_VERSION}")
    target = out_dir / "openseadragon"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(script, target / script.name)
    shutil.copytree(source / "images", target / "images", dirs_exist_ok=True)
    license_file = source.parents[1] / "LICENSE.txt"
    if license_file.is_file():
        shutil.copy2(license_file, target / "LICENSE.txt")
