"""Share links in Chromium: made from the pages, opened in a fresh browser context that never
signed in (a file behind a password and a download limit, a folder and its zip, a file request's
drop zone and its limit), revoked from "Shared links"; the visitor's pages clean for axe."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
DROP = """([names, sizes]) => {
  const transfer = new DataTransfer()
  names.forEach((name, index) => transfer.items.add(new File([new Uint8Array(sizes[index]).fill(65 + index)], name)))
  document.querySelector('#share-drop').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true }))
}"""


def make_link(page, form_url: str, **choices) -> str:
    page.goto(form_url)
    if "password" in choices:
        page.fill("[data-testid=share-password-new]", choices["password"])
    if "max_downloads" in choices:
        page.fill("[data-testid=share-max-downloads]", str(choices["max_downloads"]))
    if "upload_max_mib" in choices:
        page.fill("[data-testid=share-upload-max]", str(choices["upload_max_mib"]))
    with page.expect_navigation():
        page.click("[data-testid=share-create]")
    return page.locator("[data-testid=share-url]").input_value()


def visitor(browser):
    """A browser that never signed in and holds no cookie of the service."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 800})
    return context, context.new_page()


def axe_clean(page) -> None:
    page.evaluate(AXE.read_text())
    assert page.evaluate("async () => (await axe.run()).violations.map(v => v.id)") == []


def test_a_file_behind_a_password_and_one_download(page, server, api, browser):
    api.put("team", "plans/plan.txt", b"the plan")
    page.goto(server.url + "/b/team/plans/plan.txt")
    page.click("[data-testid=share]")
    url = make_link(page, page.url, password="hunter22", max_downloads=1)
    assert re.fullmatch(rf"{server.url}/s/[A-Za-z0-9_-]{{24}}", url)
    context, guest = visitor(browser)
    guest.goto(url)
    axe_clean(guest)
    guest.fill("[data-testid=share-password]", "wrong one")
    guest.click("[data-testid=share-unlock]")
    expect(guest.locator("[data-testid=share-wrong]")).to_be_visible()
    guest.fill("[data-testid=share-password]", "hunter22")
    guest.click("[data-testid=share-unlock]")
    expect(guest.locator("h1")).to_have_text("plan.txt")
    expect(guest.locator("[data-testid=share-expiry]")).to_contain_text("1 more download")
    axe_clean(guest)
    with guest.expect_download() as download:
        guest.click("[data-testid=share-download]")
    assert Path(download.value.path()).read_bytes() == b"the plan"
    response = guest.goto(url)
    assert response.status == 410
    expect(guest.locator("h1")).to_have_text("This link no longer works")
    context.close()


def test_a_folder_link_lists_and_zips_and_is_revoked(page, server, api, browser):
    api.put("team", "photos/a.jpg", b"a")
    api.put("team", "photos/2024/b.jpg", b"b")
    api.put("team", "private/c.txt", b"c")
    page.goto(server.url + "/b/team/photos/")
    page.click("[data-testid=share-folder]")
    url = make_link(page, page.url)
    context, guest = visitor(browser)
    guest.goto(url)
    expect(guest.locator("[data-testid=share-row]")).to_have_count(1)  # a.jpg; 2024/ is a folder
    expect(guest.get_by_text("c.txt")).to_have_count(0)
    with guest.expect_download() as download:
        guest.click("[data-testid=share-zip]")
    import zipfile

    assert sorted(zipfile.ZipFile(download.value.path()).namelist()) == ["2024/b.jpg", "a.jpg"]
    page.goto(server.url + "/shares")
    item = page.locator("[data-testid=share-item]").first
    expect(item).to_have_attribute("data-state", "active")
    expect(item).to_contain_text("folder")
    expect(item).to_contain_text("1")  # the zip was one download
    with page.expect_navigation():
        item.locator("[data-testid=share-revoke]").click()
    expect(page.locator("[data-testid=share-item]").first).to_have_attribute("data-state", "revoked")
    assert guest.goto(url).status == 410
    context.close()


def test_a_file_request_takes_files_it_cannot_show_and_stops_at_its_limit(page, server, api, browser):
    api.put("inbox", "cv/taken.pdf", b"someone else's")
    page.goto(server.url + "/b/inbox/cv/")
    page.click("[data-testid=request-files]")
    expect(page.locator("[data-testid=share-allow-upload]")).to_be_checked()
    url = make_link(page, page.url, upload_max_mib=1)
    context, guest = visitor(browser)
    errors = []
    guest.on("console", lambda message: message.type == "error" and errors.append(message.text))
    guest.goto(url)
    expect(guest.locator("[data-testid=share-dropzone]")).to_be_visible()
    expect(guest.get_by_text("taken.pdf")).to_have_count(0)  # others' files unseen
    axe_clean(guest)
    guest.evaluate(DROP, [["taken.pdf", "letter.txt"], [1000, 2000]])
    expect(guest.locator("[data-testid=share-upload][data-state=done]")).to_have_count(2)
    assert api.keys("inbox") == ["cv/letter.txt", "cv/taken (1).pdf", "cv/taken.pdf"]
    assert api.file("inbox", "cv/taken.pdf")["bytes"] == len(b"someone else's")  # never replaced
    guest.evaluate(DROP, [["huge.bin"], [1024 * 1024]])  # 3000 bytes in: a MiB more passes the limit
    failed = guest.locator("[data-testid=share-upload][data-state=error]")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("Too much")
    assert "huge.bin" not in " ".join(api.keys("inbox"))
    assert all("507" in error for error in errors)  # the refused creation, and nothing else
    context.close()


def test_an_expired_link_is_a_friendly_page(server, api, browser):
    """The link's time is over (set in the database, as time would): the visitor gets a 410 page
    that says so, and neither the page nor the file's bytes open."""
    import json
    import sqlite3
    import urllib.request

    api.put("team", "old.txt", b"old news")
    request = urllib.request.Request(server.url + "/v1/shares", method="POST",
                                     data=json.dumps({"bucket": "team", "key": "old.txt"}).encode())
    with urllib.request.urlopen(request) as response:
        url = json.loads(response.read())["url"]
    with sqlite3.connect(server.data_dir / "files.db") as db:
        db.execute("UPDATE shares SET expires_at = 1")
    context, guest = visitor(browser)
    assert guest.goto(url).status == 410
    expect(guest.locator("h1")).to_have_text("This link no longer works")
    expect(guest.locator("main")).to_contain_text("expired")
    axe_clean(guest)
    assert guest.goto(url + "/f/old.txt").status == 410
    context.close()
