"""Headless Chromium (Debian's chromium and chromium-driver) driven by Selenium, for the
dashboard's browser tests and its screenshots."""

from __future__ import annotations

import shutil
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

DRIVER = "/usr/bin/chromedriver"


def chromium(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    """A headless Chromium that keeps the page's console log (``console_errors``)."""
    driver = shutil.which("chromedriver") or DRIVER
    if not shutil.which("chromium") or not shutil.which(driver):
        raise RuntimeError("Chromium is missing: scripts/setup test installs chromium and "
                           "chromium-driver from Debian")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The page's console errors since the last call (the log is read once)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [e for e in entries if e.get("level") == "SEVERE"]
