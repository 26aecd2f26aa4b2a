"""Debian's chromium, headless, driven by selenium through Debian's chromedriver.

CI installs both (`.ci/run`); elsewhere a test that needs them is skipped with how to
install them, and with CI=true it fails instead, as the PostgreSQL tests do.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

HOW = "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"

# Without the background-networking flags chromium keeps calling home, and this
# machine's closed network refuses it many times a second.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    found = binaries()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no chromium to drive: {HOW}")
        pytest.skip(HOW)
    browser, driver = found
    options = Options()
    options.binary_location = browser
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(30)
    try:
        yield session
    finally:
        session.quit()
