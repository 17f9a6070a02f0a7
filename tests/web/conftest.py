"""Pages driven in a real headless Chromium (Debian's, through Playwright); nothing may load from outside the hub."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from hub.auth.roles import Role
from hub.cli.security import register_client
from hub.store.database import Database

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    context = browser.new_context(base_url=server, locale="zh-CN")
    page = context.new_page()
    external: list[str] = []
    page.on("request", lambda request: external.append(request.url)
            if not request.url.startswith(server) and not request.url.startswith("data:") else None)
    yield page
    context.close()
    assert external == [], f"the page loaded from outside the hub: {external}"


def sign_in(page: Page, database: Database, path: str, panel: str) -> None:
    """Open a governance page at ``path`` and sign in as a new data-governance client; ``panel`` then shows."""
    client, secret = register_client(database, "数据治理科", Role.GOVERNANCE)
    page.goto(path)
    expect(page.get_by_role("heading", name="登录")).to_be_visible()
    page.fill("#client-id", client.client_id)
    page.fill("#client-secret", secret)
    page.click("#login")
    expect(page.locator(panel)).to_be_visible()


#: Where the browser tests leave their screenshots (the README shows copies of them, in docs/screenshots).
ARTIFACTS = Path(os.environ.get("HUB_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "var" / "test-artifacts")


def save_screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot of ``page`` as ``<ARTIFACTS>/<name>.png``, 1600 pixels wide."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000  # not blank
    return path
