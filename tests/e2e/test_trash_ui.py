"""The trash in real Chromium against a real gunicorn server: a file deleted from the bucket page
comes back with the message's Undo; the Trash page deletes a selected file for good after asking; a
file's page lists its versions. The pages axe-clean, with screenshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import SCREENSHOTS

pytestmark = pytest.mark.e2e
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def assert_accessible(page) -> None:
    page.evaluate(AXE.read_text())  # through DevTools: the page's CSP rightly forbids inline scripts
    violations = page.evaluate("async () => (await axe.run()).violations.map(v => v.id + ': ' + v.help)")
    assert violations == [], violations


def test_undo_brings_a_deleted_file_back_and_the_trash_deletes_for_good(page, server, api):
    for key in ("keep.txt", "oops.txt", "old.txt"):
        api.put("undo", key, key.encode())
    page.goto(server.url + "/b/undo/")
    page.check("[data-testid=object-row][data-key='oops.txt'] [data-testid=select-row]")
    page.click("[data-testid=delete-selected]")
    expect(page.locator("#confirm-message")).to_have_text(
        "Delete 1 selected file(s)? They go to the trash for 30 days: Undo or the Trash brings them back.")
    page.click("[data-testid=confirm-delete]")
    expect(page.locator("[data-testid=flash]")).to_contain_text("Deleted 1 file ·")
    assert api.keys("undo") == ["keep.txt", "old.txt"]
    expect(page.locator("[data-testid=usage-kept]")).to_contain_text("1 file, 8 B in trash and versions")
    assert_accessible(page)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "undo-light.png"), full_page=True)

    page.click("[data-testid=undo]")
    expect(page.locator("[data-testid=flash]")).to_contain_text("Restored 1 file.")
    expect(page.locator("[data-testid=object-row]")).to_have_count(3)
    assert api.keys("undo") == ["keep.txt", "old.txt", "oops.txt"]

    # The Trash: "Delete forever" asks in the page's dialog, then goes to its own route (not Restore's).
    api.call("DELETE", "/v1/files/undo/old.txt")
    page.click("[data-testid=bucket-trash]")
    expect(page.locator("[data-testid=trash-row]")).to_have_count(1)
    assert_accessible(page)
    page.screenshot(path=str(SCREENSHOTS / "trash-light.png"), full_page=True)
    page.check("[data-testid=trash-row] [data-testid=select-row]")
    page.click("[data-testid=purge-selected]")
    expect(page.locator("[data-testid=confirm-delete]")).to_have_text("Delete forever")
    page.click("[data-testid=confirm-delete]")
    expect(page.locator("[data-testid=flash]")).to_contain_text("Deleted 1 file for good.")
    expect(page.locator("[data-testid=trash-empty]")).to_have_text("The trash is empty.")
    assert api.call("GET", "/v1/trash/undo")["data"] == []
    assert api.keys("undo") == ["keep.txt", "oops.txt"]

    # A replaced file's page lists the version it replaced.
    api.put("undo", "keep.txt", b"keep.txt, changed")
    page.goto(server.url + "/b/undo/keep.txt")
    expect(page.locator("[data-testid=version-row]")).to_have_count(1)
    assert_accessible(page)
    page.screenshot(path=str(SCREENSHOTS / "versions-light.png"), full_page=True)
