"""The slide view in a real headless browser (Debian's chromium): it opens from disk with
no network, its tiles render, choosing a gene or a value recolours the spots, and a missing
or damaged file is named on the page with the fix."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from browser import (
    CHROMEDRIVER,
    CHROMIUM,
    HOW,
    requested_urls,
    screenshot,
    start_chromium,
    wait_for,
)
from conftest import IN_CI, require_path
from view_slides import write_prediction

from stflow.view.build import write_view

pytestmark = pytest.mark.slow  # a browser per module: seconds, not the fast loop's milliseconds

DRAWN = "document.body.dataset.drawn"
MESSAGE = "(!document.getElementById('message').hidden && document.getElementById('message').textContent)"


@pytest.fixture(scope="module")
def driver():
    require_path(CHROMIUM, HOW)
    require_path(CHROMEDRIVER, HOW)
    if importlib.util.find_spec("selenium") is None:  # as require_path: fails in CI
        (pytest.fail if IN_CI else pytest.skip)("selenium is missing: pip install -e '.[dev]'")
    browser = start_chromium()
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def view(tmp_path_factory) -> Path:
    return write_view(write_prediction(tmp_path_factory.mktemp("slide"), truth=True))


def open_page(driver, folder: Path) -> None:
    requested_urls(driver)  # forget earlier pages' requests
    driver.get((folder / "index.html").as_uri())


def viewer_pixels(driver) -> np.ndarray:
    """The screenshot's pixels inside the viewer, legend, navigator and buttons left out."""
    box = driver.execute_script(
        "const r = document.getElementById('viewer').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height].map(Math.round)")
    left, top, width, height = box
    shot = screenshot(driver)
    return shot[top + 50: top + height - 130, left + 10: left + width - 210]


def choose(driver, gene: str) -> None:
    box = driver.find_element("id", "gene")
    box.clear()
    box.send_keys(gene + "\n")


def test_the_view_opens_offline_renders_its_tiles_and_asks_for_nothing_outside(driver, view):
    open_page(driver, view)
    assert wait_for(driver, DRAWN) == "ERBB2/mean"
    wait_for(driver, "STFLOW_VIEW.viewer.world.getItemAt(0).getFullyLoaded()")
    urls = requested_urls(driver)
    assert urls and all(u.startswith("file://") for u in urls), sorted(urls)
    assert any("/image_files/" in u for u in urls)
    driver.find_element("id", "show-spots").click()  # the tiles alone
    wait_for(driver, "!document.getElementById('show-spots').checked")
    pixels = viewer_pixels(driver).astype(int)
    tissue = (pixels[..., 0] - pixels[..., 1] > 40) & (pixels[..., 2] > 120)  # pink/purple
    glass = pixels.min(axis=-1) > 230                                         # white
    assert tissue.mean() > 0.15 and glass.mean() > 0.05, (tissue.mean(), glass.mean())
    driver.find_element("id", "show-spots").click()


def test_choosing_a_gene_or_a_value_recolours_the_spots(driver, view):
    open_page(driver, view)
    assert wait_for(driver, DRAWN) == "ERBB2/mean"
    kinds = driver.execute_script("return [...document.getElementById('kind').options].map(o => o.value)")
    assert kinds == ["mean", "lower", "upper", "width", "measured"]
    erbb2 = viewer_pixels(driver).astype(int)
    choose(driver, "GATA3")
    assert wait_for(driver, f"{DRAWN} === 'GATA3/mean' && {DRAWN}") == "GATA3/mean"
    gata3 = viewer_pixels(driver).astype(int)
    changed = np.abs(erbb2 - gata3).sum(axis=-1) > 60
    assert changed.mean() > 0.1, changed.mean()
    legend = driver.find_element("id", "legend-title").text
    assert legend.startswith("GATA3: predicted mean")
    driver.find_element("css selector", "#kind option[value='width']").click()
    assert wait_for(driver, f"{DRAWN} === 'GATA3/width' && {DRAWN}") == "GATA3/width"
    width = viewer_pixels(driver).astype(int)
    assert (np.abs(width - gata3).sum(axis=-1) > 60).mean() > 0.1
    assert "interval width" in driver.find_element("id", "legend-title").text
    assert not driver.execute_script(f"return {MESSAGE}")


def broken_copy(view: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "broken.view"
    shutil.copytree(view, copy)
    return copy


def test_a_missing_gene_file_is_named_on_the_page(driver, view, tmp_path):
    copy = broken_copy(view, tmp_path)
    (copy / "data" / "genes" / "00001.js").unlink()
    open_page(driver, copy)
    wait_for(driver, DRAWN)
    choose(driver, "GATA3")
    message = wait_for(driver, MESSAGE)
    assert "data/genes/00001.js" in message and "missing" in message and "stflow view" in message


def test_a_damaged_spots_file_is_named_on_the_page(driver, view, tmp_path):
    copy = broken_copy(view, tmp_path)
    spots = copy / "data" / "spots.js"
    spots.write_text(spots.read_text()[: len(spots.read_text()) // 2])  # cut short
    open_page(driver, copy)
    message = wait_for(driver, MESSAGE)
    assert "data/spots.js" in message and "damaged" in message and "Fix:" in message


def test_missing_tiles_are_named_on_the_page(driver, view, tmp_path):
    copy = broken_copy(view, tmp_path)
    levels = sorted((copy / "image_files").iterdir(), key=lambda p: int(p.name))
    for level in levels[-3:]:
        shutil.rmtree(level)
    open_page(driver, copy)
    message = wait_for(driver, MESSAGE)
    assert "image_files/" in message and "tile" in message
