"""Debian's headless chromium driven by selenium, for the slide views' tests and benchmark.

Nothing is downloaded: the browser and its driver are the Debian packages (`chromium`,
`chromium-driver`; .ci/install-chromium.sh), named explicitly so selenium-manager stays
idle. Missing, a test skips saying how to install them (fails in CI).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HOW = "install Debian's chromium and chromium-driver: sudo .ci/install-chromium.sh " \
      "(apt-get install chromium chromium-driver)"


def start_chromium(width: int = 1000, height: int = 800):
    """A headless chromium with no network (offline, as the views must open) that records
    every request it makes (``requested_urls``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--window-size={width},{height}",
                     "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_network_conditions(offline=True, latency=0, download_throughput=0,
                                  upload_throughput=0)
    return driver


def requested_urls(driver) -> set[str]:
    """The URLs the page asked for since the last call (from the performance log)."""
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


def wait_for(driver, script: str, timeout: float = 30.0):
    """Poll ``script`` (a JavaScript expression) until it is truthy; return its value."""
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        if time.monotonic() > end:
            state = driver.execute_script(
                "return [document.body.dataset.state, document.getElementById('message')"
                ".textContent]")
            raise TimeoutError(f"{script} still false after {timeout} s; page: {state}")
        time.sleep(0.05)


def screenshot(driver):
    """The window as an (H, W, 3) uint8 array."""
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
