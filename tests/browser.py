"""A real headless Chromium (Debian's `chromium` + `chromedriver`) driven by Selenium.

The driver path is given, so Selenium Manager never looks for (or downloads) a driver; the flags
keep Chromium off the network it cannot reach here (no background, sync or update traffic).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def start(profile: Path, width: int = 1280, height: int = 900, lang: str = "en-US"):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(binary):
            raise RuntimeError(f"{binary} is missing: scripts/test installs Debian's chromium and chromium-driver as root")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-extensions", f"--lang={lang}", f"--window-size={width},{height}",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # On Linux, `--lang` alone leaves navigator.language at en-US: the accepted languages and the
    # environment's LANGUAGE set it.
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    env = {**os.environ, "LANGUAGE": lang.replace("-", "_")}
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER, env=env), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


def console_errors(driver) -> list[str]:
    """Severe messages from the page's console (script errors, CSP violations, failed loads)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
