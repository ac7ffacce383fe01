"""Debian's Chromium driven by Playwright, for the tests of the service's own pages.

Playwright's own browser download is never used: the package drives /usr/bin/chromium (Debian's
`chromium`, which .ci/run installs). Without it the tests skip locally, and fail when
INFRA_REVIEW_REQUIRE_BROWSER=1 (CI). The flags keep Chromium off the network it is not asked to use
(this machine's network is closed: background fetches would only fail) and let it run as root.
Each step can leave a screenshot under the test's temporary folder, for debugging.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

REQUIRE = "INFRA_REVIEW_REQUIRE_BROWSER"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions"]


def chromium() -> str:
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path:
        return path
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"Chromium is not installed, and {REQUIRE}=1: CI must install it (.ci/apt.sh, from .ci/run)")
    pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")


class Shots:
    """Numbered screenshots of each step in `folder`."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page, self.folder, self.n = page, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    async def __call__(self, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


async def open_page(tmp_path: Path) -> AsyncIterator[tuple[Any, Shots]]:
    """A fresh browser (its own empty profile) and page; closed afterwards."""
    from playwright.async_api import async_playwright

    executable = chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            yield page, Shots(page, tmp_path / "screenshots")
        finally:
            await browser.close()
