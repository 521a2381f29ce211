"""`stflow view` without a browser: the folder it writes (page, OpenSeadragon, pyramid,
spot data), the values it carries, and the bad inputs it refuses with the file and the fix.
The page itself is tested in a browser in tests/test_view_browser.py."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from slides import aperio_slide
from view_slides import GENES, write_prediction

from stflow.cli import main
from stflow.errors import StflowError
from stflow.view.assets import OPENSEADRAGON_VERSION
from stflow.view.build import write_view
from stflow.view.pyramid import write_pyramid

REPO = Path(__file__).resolve().parents[1]


def data_call(path: Path) -> list:
    """The arguments of the one ``STFLOW_VIEW.<call>(...)`` a data file holds."""
    text = path.read_text()
    match = re.fullmatch(r"STFLOW_VIEW\.\w+\((.*)\);\n", text, re.S)
    return json.loads(f"[{match.group(1)}]")


def codes(entry: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(entry["q"]), np.uint8)


@pytest.fixture(scope="module")
def prediction(tmp_path_factory) -> Path:
    return write_prediction(tmp_path_factory.mktemp("slide"), truth=True)


@pytest.fixture(scope="module")
def view(prediction) -> Path:
    return write_view(prediction)


def test_the_view_is_a_folder_beside_the_h5ad_that_ships_everything_it_opens(view, prediction):
    assert view == prediction.with_name("slide.view")
    for name in ("index.html", "view.js", "view.css", "image.dzi", "data/meta.js",
                 "data/spots.js", "openseadragon/openseadragon.min.js",
                 "openseadragon/images/home_rest.png", "image_files/0/0_0.jpeg"):
        assert (view / name).is_file(), name
    assert sorted(p.name for p in (view / "data" / "genes").iterdir()) == \
        ["00000.js", "00001.js", "00002.js"]
    page = (view / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing from the network
    assert (view.parent / "slide.view.sha256").is_file()      # atomic, with its checksums
    assert not list(view.parent.glob(".slide.view.tmp-*"))


def test_the_data_files_carry_positions_shift_flags_and_every_kind_of_value(view, prediction):
    adata = ad.read_h5ad(prediction)
    (meta,) = data_call(view / "data" / "meta.js")
    assert meta["genes"] == GENES and meta["n"] == adata.n_obs and meta["first_gene"] == "ERBB2"
    assert [k["kind"] for k in meta["kinds"]] == ["mean", "lower", "upper", "width", "measured"]
    assert meta["tile_source"]["Image"]["Size"] == {"Width": "1200", "Height": "900"}
    assert meta["spot_diameter_px"] == pytest.approx(24.0)
    assert meta["n_shifted"] == int(adata.obs["shifted"].sum()) > 0
    (spots,) = data_call(view / "data" / "spots.js")
    xy = np.frombuffer(base64.b64decode(spots["xy"]), np.float32).reshape(-1, 2)
    np.testing.assert_allclose(xy, adata.obsm["spatial"], rtol=1e-6)
    index, kinds = data_call(view / "data" / "genes" / "00001.js")
    assert index == 1
    truths = {"mean": adata.X[:, 1], "lower": adata.layers["lower"][:, 1],
              "upper": adata.layers["upper"][:, 1], "measured": adata.layers["truth"][:, 1],
              "width": adata.layers["upper"][:, 1] - adata.layers["lower"][:, 1]}
    for kind, truth in truths.items():
        entry = kinds[kind]
        decoded = entry["lo"] + codes(entry) / 254 * (entry["hi"] - entry["lo"])
        np.testing.assert_allclose(decoded, truth, atol=(entry["hi"] - entry["lo"]) / 254)
    assert kinds["width"]["lo"] == 0.0  # widths from 0; expression kinds share one range
    assert kinds["mean"]["lo"] == kinds["upper"]["lo"] == kinds["measured"]["lo"]


@pytest.mark.slow  # about 5 s: 150 tiles of a 2220 x 2967 px Aperio slide
def test_a_whole_slide_file_becomes_a_pyramid_through_openslide(tmp_path):
    pyramid = write_pyramid(aperio_slide(), tmp_path, threads=2)
    assert (pyramid.width, pyramid.height) == (2220, 2967)
    dzi = (tmp_path / "image.dzi").read_text()
    assert 'Width="2220"' in dzi and 'Height="2967"' in dzi
    top = max(int(p.name) for p in (tmp_path / "image_files").iterdir())
    assert len(list((tmp_path / "image_files" / str(top)).iterdir())) == 9 * 12


def test_the_command_writes_the_view_where_asked(prediction, tmp_path):
    assert main(["view", str(prediction), "--out", str(tmp_path / "v"), "--threads", "1"]) == 0
    assert (tmp_path / "v" / "index.html").is_file()


def refused(capsys, *argv: str) -> str:
    assert main(["view", *argv]) == 2
    return capsys.readouterr().err


def test_bad_inputs_are_refused_naming_the_file_and_the_fix(prediction, tmp_path, capsys):
    message = refused(capsys, str(tmp_path / "none.h5ad"))
    assert "none.h5ad: prediction file not found. Fix:" in message
    broken = tmp_path / "broken.h5ad"
    broken.write_bytes(b"not hdf5")
    assert "broken.h5ad: cannot be read as an h5ad" in refused(capsys, str(broken))
    small = tmp_path / "small.png"
    from PIL import Image
    Image.new("RGB", (120, 90), "white").save(small)
    message = refused(capsys, str(prediction), "--image", str(small), "--out", str(tmp_path / "x"))
    assert "small.png: only " in message and "% of the 780 spots" in message
    assert "--image" in message
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"\0" * 100)
    message = refused(capsys, str(prediction), "--image", str(garbage), "--out", str(tmp_path / "y"))
    assert "garbage.tif: cannot be read as a slide or an image" in message
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_missing_openseadragon_names_the_make_target(prediction, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STFLOW_OPENSEADRAGON", str(tmp_path / "nowhere"))
    message = refused(capsys, str(prediction), "--out", str(tmp_path / "v"))
    assert "OpenSeadragon 6.1.1 is not installed" in message and "make openseadragon" in message
    assert not (tmp_path / "v").exists()


def test_the_makefile_fetches_the_openseadragon_the_views_expect():
    makefile = (REPO / "Makefile").read_text()
    assert f"OSD_VERSION := {OPENSEADRAGON_VERSION}\n" in makefile
    assert re.search(r"OSD_SHA256 := [0-9a-f]{64}\n", makefile)


def test_opening_or_serving_a_folder_that_is_no_view_says_how_to_build_one(tmp_path):
    from stflow.view.serve import open_view, serve_view

    for show in (open_view, lambda folder: serve_view(folder, 0)):
        with pytest.raises(StflowError, match="is not a view .no index.html.. Fix: build it"):
            show(tmp_path)


@pytest.mark.slow  # a child process that imports the library, then serves until stopped
def test_serve_answers_the_view_on_localhost(prediction, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "stflow", "view", str(prediction), "--out",
                               str(tmp_path / "v"), "--serve", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with direct.open(f"http://127.0.0.1:{port}/data/meta.js") as reply:
                    assert reply.read().startswith(b"STFLOW_VIEW.meta(")
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_fold_gets_a_view_of_each_test_section_that_has_an_image(prediction, tmp_path):
    from stflow.view.build import write_views

    fold = tmp_path / "fold0"
    fold.mkdir()
    adata = ad.read_h5ad(prediction)
    adata.write_h5ad(fold / "A.h5ad")
    del adata.uns["spatial"]  # as a HEST-Benchmark sample: its image is a patch file
    adata.write_h5ad(fold / "B.h5ad")
    out = write_views(fold, out=tmp_path / "views")
    assert sorted(p.name for p in out.iterdir()) == ["A.view"]
    assert (out / "A.view" / "index.html").is_file()
