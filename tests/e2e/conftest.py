"""Real Chromium (Debian's) driven by Playwright against a real gunicorn server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Playwright cannot download browsers here; Debian's Chromium runs with these (see DESIGN.md).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SCREENSHOTS = Path(__file__).with_name("screenshots")


@pytest.fixture(scope="session")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: `make test` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800}, accept_downloads=True)
    yield context
    context.close()


@pytest.fixture
def page(context):
    """A page that records console errors and script dialogs; a test that saw any fails."""
    page = context.new_page()
    page.console_errors = []
    page.dialogs = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    assert page.console_errors == [], page.console_errors
    assert page.dialogs == [], page.dialogs


class Api:
    """The JSON API of a live server, for arranging and checking what the browser did."""

    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, body: bytes | None = None) -> dict:
        request = urllib.request.Request(self.base + path, data=body, method=method)
        with urllib.request.urlopen(request) as response:
            data = response.read()
            return json.loads(data) if data else {}

    def put(self, bucket: str, key: str, content: bytes, mime_type: str | None = None) -> dict:
        fields = {"bucket": bucket, "key": key, "size": len(content)}
        if mime_type:
            fields["mime_type"] = mime_type
        session = self.call("POST", "/v1/files", json.dumps(fields).encode())
        if not content:
            return self.file(bucket, key)
        return self.call("POST", session["url"].removeprefix(self.base), content)

    def file(self, bucket: str, key: str) -> dict:
        from urllib.parse import quote

        return self.call("GET", f"/v1/files/{bucket}/{quote(key)}")

    def keys(self, bucket: str) -> list[str]:
        return [f["key"] for f in self.call("GET", f"/v1/files/{bucket}")["data"]]

    def session_status(self, url: str) -> int:
        """The HTTP status of a GET of an upload session's URL (404 once it is gone)."""
        try:
            with urllib.request.urlopen(urllib.request.Request(url)) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


@pytest.fixture
def api(server):
    return Api(server.url)
