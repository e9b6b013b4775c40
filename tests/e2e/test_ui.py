"""The web UI in real Chromium against a real gunicorn server: uploads (dropped, picked, paused,
resumed after a reload, surviving the network going away), browsing, deleting, and safety."""

from __future__ import annotations

import datetime
import hashlib
import os
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import SCREENSHOTS

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


def throttle_uploads(page, bytes_per_second: int, offline: bool = False) -> None:
    """Slow the page's uploads down (or cut its network) through the DevTools protocol, on one
    session per page (each session keeps conditions of its own)."""
    if getattr(page, "cdp", None) is None:
        page.cdp = page.context.new_cdp_session(page)
        page.cdp.send("Network.enable")
    page.cdp.send("Network.emulateNetworkConditions", {"offline": offline, "latency": 0, "downloadThroughput": -1,
                                                       "uploadThroughput": bytes_per_second})


def make_bucket(page, server, name: str) -> None:
    page.goto(server.url + "/")
    page.fill("#new-bucket", name)
    page.click("[data-testid=create-bucket]")
    expect(page).to_have_url(re.compile(f"/b/{name}/$"))
    page.wait_for_load_state()  # its scripts have run: a click now reaches their handlers


def pattern(index: int, size: int) -> bytes:
    """The bytes the page's JavaScript makes for file `index` (see DROP_FILES)."""
    return bytes((index * 31 + i * 7) % 251 for i in range(size))


DROP_FILES = """([names, sizes, zone]) => {
  const transfer = new DataTransfer()
  names.forEach((name, index) => {
    const bytes = new Uint8Array(sizes[index]).map((_, i) => (index * 31 + i * 7) % 251)
    transfer.items.add(new File([bytes], name, { type: 'application/octet-stream' }))
  })
  document.querySelector(zone).dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true }))
}"""

# A dropped folder reaches the page as FileSystemEntry objects; Chromium will not let a script build
# real ones, so these stand-ins have the same shape (isFile/isDirectory, file(), createReader()).
DROP_FOLDER = """([tree, zone]) => {
  let n = 0
  const entry = (name, node) => typeof node === 'number'
    ? { isFile: true, isDirectory: false, name,
        file: (ok) => ok(new File([new Uint8Array(node).map((_, i) => (n++ * 0 + i * 7) % 251)], name)) }
    : { isFile: false, isDirectory: true, name, createReader: () => {
          let done = false
          const children = () => Object.entries(node).map(([k, v]) => entry(k, v))
          return { readEntries: (ok) => { ok(done ? [] : children()); done = true } }
        } }
  const items = Object.entries(tree).map(([name, node]) => ({ webkitGetAsEntry: () => entry(name, node) }))
  const event = new Event('drop', { bubbles: true, cancelable: true })
  Object.defineProperty(event, 'dataTransfer', { value: { items, files: [] } })
  document.querySelector(zone).dispatchEvent(event)
}"""


def drop(page, script: str, *args) -> None:
    """Dispatch a drop once the page's upload module is listening (it marks the zone ready)."""
    page.wait_for_selector("[data-testid=dropzone][data-ready=true]")
    page.evaluate(script, [*args, "[data-testid=dropzone]"])


def pick(page, which: str, path) -> None:
    """Choose files (or a folder) with the page's picker once its upload module is listening."""
    page.wait_for_selector("[data-testid=dropzone][data-ready=true]")
    page.set_input_files(f"[data-testid={which}]", str(path))


def wait_all_done(page, count: int, timeout: float = 60_000) -> None:
    expect(page.locator("[data-testid=upload-item][data-state=done]")).to_have_count(count, timeout=timeout)


def test_drop_several_files(page, server, api):
    make_bucket(page, server, "dropped")
    names, sizes = ["a.bin", "b b.txt", "été.dat"], [1, 300_000, 2 * MIB + 3]
    drop(page, DROP_FILES, names, sizes)
    wait_all_done(page, 3)
    for index, (name, size) in enumerate(zip(names, sizes, strict=True)):
        info = api.file("dropped", name)
        assert (info["bytes"], info["sha256"]) == (size, hashlib.sha256(pattern(index, size)).hexdigest())
    expect(page.locator("[data-testid=object-row]")).to_have_count(3)  # the listing shows them


DROP_ELSEWHERE = """(selector) => {
  const transfer = new DataTransfer()
  transfer.items.add(new File([new Uint8Array(10)], 'stray.bin'))
  const results = []
  for (const type of ['dragover', 'drop']) {
    const event = new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true })
    document.querySelector(selector).dispatchEvent(event)
    results.push(event.defaultPrevented)  // not prevented: the browser would open the file
  }
  return results
}"""


def test_a_file_dropped_outside_the_drop_zone_never_leaves_the_page(page, server, api):
    """The banner, the breadcrumbs and the buckets page: the browser's default (open the file,
    leave the page, cut the uploads) is prevented; only the drop zone takes files."""
    make_bucket(page, server, "stray")
    page.wait_for_selector("[data-testid=dropzone][data-ready=true]")
    for selector in ("header", "nav", "main", "footer"):
        if page.locator(selector).count():
            assert page.evaluate(DROP_ELSEWHERE, selector) == [True, True], selector
    page.goto(server.url + "/")
    assert page.evaluate(DROP_ELSEWHERE, "body") == [True, True]
    assert api.keys("stray") == []  # and nothing was uploaded by it


def test_keyboard_focus_shows_on_the_upload_buttons_and_the_filter_hint_only_with_a_filter(page, server):
    make_bucket(page, server, "keys")
    page.wait_for_selector("[data-testid=dropzone][data-ready=true]")
    outline = "(label) => getComputedStyle(document.querySelector(label)).outlineStyle"
    assert page.evaluate(outline, "label[for=file-input]") == "none"
    page.focus("#file-input")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focus by keyboard: :focus-visible
    assert page.evaluate("() => document.activeElement.id") == "file-input"
    assert page.evaluate(outline, "label[for=file-input]") == "solid"
    expect(page.locator(".top .hint")).to_be_visible()  # the bucket page has a filter
    page.goto(server.url + "/login")
    expect(page.locator(".top .hint")).to_be_hidden()


def test_the_page_keeps_up_messages_go_and_the_uploads_panel_folds_and_clears(page, server, api):
    make_bucket(page, server, "tidy-panel")
    flash = page.locator("[data-testid=flash]")
    expect(flash).to_contain_text("created")
    flash.locator("[data-dismiss]").click()
    expect(flash).to_have_count(0)
    expect(page.locator(".danger-zone")).to_have_count(1)  # the bucket is empty: it may be deleted
    drop(page, DROP_FILES, ["one.txt"], [10])
    wait_all_done(page, 1)
    expect(page.locator("[data-testid=object-row]")).to_have_count(1)
    expect(page.locator(".danger-zone")).to_have_count(0)  # not empty any more: no stale offer
    page.click("[data-testid=uploads-toggle]")
    expect(page.locator("#upload-list")).to_be_hidden()
    page.click("[data-testid=uploads-toggle]")
    expect(page.locator("#upload-list")).to_be_visible()
    page.click("[data-testid=uploads-clear]")
    expect(page.locator("[data-testid=upload-item]")).to_have_count(0)
    expect(page.locator("#uploads")).to_be_hidden()  # no empty "0 of 0 done" box
    assert api.file("tidy-panel", "one.txt")["bytes"] == 10


def test_upload_errors_are_sentences_and_retry_is_offered_only_where_it_can_help(page, server_factory):
    small = server_factory(FILES_MAX_OBJECT_SIZE="1000").start()
    make_bucket(page, small, "limits")
    drop(page, DROP_FILES, ["big.bin"], [5000])
    item = page.locator("[data-testid=upload-item]")
    expect(item).to_have_attribute("data-state", "error")
    expect(item.locator(".upload-status")).to_have_text(re.compile(r"^Too large"))
    expect(item.locator("[data-testid=retry]")).to_be_hidden()  # no retry can make it fit
    assert "tus:" not in item.inner_text() and "response code" not in item.inner_text()
    page.console_errors.clear()  # the browser logs the refused request itself


def test_a_quota_set_on_the_bucket_page_shows_and_refuses_an_upload_in_words(page, server, api):
    api.put("capped", "held.txt", b"x" * 1000)
    page.goto(server.url + "/b/capped/")
    expect(page.locator("[data-testid=usage]")).to_contain_text("1 file,")
    page.click("[data-testid=quota-open]")
    page.fill("[data-testid=quota-bytes]", "2K")
    page.fill("[data-testid=quota-files]", "10")
    with page.expect_navigation():
        page.click("[data-testid=quota-save]")
    expect(page.locator("[data-testid=flash]").first).to_contain_text("Quota set")
    expect(page.locator("[data-testid=usage]")).to_contain_text("of 10 allowed")
    expect(page.locator("[data-testid=usage]")).to_contain_text("of a 2.0 KiB quota")
    drop(page, DROP_FILES, ["big.bin"], [1500])  # 1000 + 1500 > 2048: refused before a byte is sent
    item = page.locator("[data-testid=upload-item]")
    expect(item).to_have_attribute("data-state", "error")
    expect(item.locator(".upload-status")).to_have_text(re.compile(r"^Over the quota"))
    assert "tus:" not in item.inner_text()
    page.console_errors.clear()  # the browser logs the refused request itself
    assert api.keys("capped") == ["held.txt"]
    page.goto(server.url + "/")
    expect(page.locator("[data-testid=bucket-row][data-bucket=capped] [data-testid=bucket-size]")).to_contain_text(
        "of 2.0 KiB")
    page.goto(server.url + "/b/capped/")
    page.click("[data-testid=quota-open]")
    page.fill("[data-testid=quota-bytes]", "lots")
    with page.expect_navigation():
        page.click("[data-testid=quota-save]")
    expect(page.locator(".flash-error")).to_contain_text("max_bytes must be a size")
    page.click("[data-testid=quotas-link]")  # every quota on one page, and a user's set there
    expect(page.locator("[data-testid=quota-row][data-subject='bucket:capped']")).to_contain_text("1000 B in 1 file")
    page.select_option("[data-testid=quota-kind]", "user")
    page.fill("[data-testid=quota-name]", "nobody")
    page.fill("[data-testid=quota-any-bytes]", "5G")
    with page.expect_navigation():
        page.click("[data-testid=quota-any-save]")
    expect(page.locator(".flash-error")).to_contain_text("no user 'nobody'")


def test_sort_by_name_is_the_servers_order_and_a_filter_without_match_says_so(page, server, api):
    names = ["B.txt", "a.txt", "é.txt", "Z.txt", "_x.txt"]
    for name in names:
        api.put("order", name, b"x")
    page.goto(server.url + "/b/order/")
    row_names = "() => [...document.querySelectorAll('[data-testid=object-row]')].map((row) => row.dataset.name)"
    server_order = page.evaluate(row_names)
    assert server_order == sorted(names)  # code point order: B, Z, _, a, é
    name_header = page.locator("th button[data-sort=text]").first
    name_header.click()  # descending
    assert page.evaluate(row_names) == server_order[::-1]
    name_header.click()  # ascending again: the same order as the server's
    assert page.evaluate(row_names) == server_order
    page.fill("[data-testid=filter]", "nothing like it")
    expect(page.locator("[data-testid=filter-none]")).to_be_visible()
    expect(page.locator("[data-testid=filter-none]")).to_contain_text("nothing like it")
    page.fill("[data-testid=filter]", "z.t")
    expect(page.locator("[data-testid=filter-none]")).to_be_hidden()
    expect(page.locator("[data-testid=object-row]:visible")).to_have_count(1)


def test_times_are_in_the_readers_time_zone_and_numbers_have_separators(browser, server, api):
    api.put("zones", "f.txt", b"x" * 1234567)
    context = browser.new_context(timezone_id="Asia/Kathmandu", locale="en-US")  # UTC+05:45
    try:
        page = context.new_page()
        page.goto(server.url + "/b/zones/f.txt")
        stamp = page.locator("time").first
        utc = stamp.get_attribute("title")
        assert utc.endswith("UTC")
        moment = datetime.datetime.strptime(utc, "%Y-%m-%d %H:%M UTC") + datetime.timedelta(hours=5, minutes=45)
        assert stamp.inner_text() == moment.strftime("%b %-d, %Y, %-I:%M %p")  # Kathmandu time, en-US
        expect(page.locator("dd", has_text="1,234,567 bytes")).to_have_count(1)
        page.goto(server.url + "/")
        expect(page.locator("tr", has_text="zones").locator("time")).to_have_attribute("data-local", "true")
    finally:
        context.close()


def minimal_pdf(text: str) -> bytes:
    """A real one-page PDF showing `text` (objects, cross-reference table and trailer)."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_a_pdf_preview_is_loaded_not_blocked(page, server, api):
    """Chromium refuses its PDF viewer in an <iframe sandbox> (net::ERR_BLOCKED_BY_CLIENT): the
    preview frame must load the PDF, while the response's own CSP sandbox still contains it."""
    api.put("docs", "report.pdf", minimal_pdf("Quarterly report"), "application/pdf")
    failed = []
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    with page.expect_response(lambda response: "/v1/content/docs/report.pdf" in response.url) as answer:
        page.goto(server.url + "/b/docs/report.pdf")
    assert answer.value.status == 200, answer.value.all_headers()
    assert "sandbox" in answer.value.all_headers()["content-security-policy"], answer.value.all_headers()
    frame = page.locator("[data-testid=pdf-preview]")
    expect(frame).to_have_count(1)
    assert frame.get_attribute("sandbox") is None
    page.wait_for_load_state("load")
    assert [entry for entry in failed if "report.pdf" in entry[0]] == []


def downloaded_zip(page, button: str, tmp_path, expected_name: str):
    """Click `button`, check the download's suggested name, and open what arrived as a zip."""
    import zipfile

    with page.expect_download() as download:
        page.click(f"[data-testid={button}]")
    assert download.value.suggested_filename == expected_name
    saved = tmp_path / expected_name
    download.value.save_as(saved)
    archive = zipfile.ZipFile(saved)
    assert archive.testzip() is None
    return archive


def test_download_a_folder_as_zip(page, server, api, tmp_path):
    big = os.urandom(3 * MIB)
    api.put("zips", "photos/cat.jpg", big)
    api.put("zips", "photos/2026/dog.jpg", b"woof")
    api.put("zips", "notes.txt", b"not in the folder")
    page.goto(server.url + "/b/zips/photos/")
    with downloaded_zip(page, "download-zip", tmp_path, "photos.zip") as archive:
        assert archive.namelist() == ["2026/dog.jpg", "cat.jpg"]
        assert archive.read("cat.jpg") == big and archive.read("2026/dog.jpg") == b"woof"


def test_download_the_selected_files_as_zip(page, server, api, tmp_path):
    api.put("picks", "docs/a.txt", b"alpha")
    api.put("picks", "docs/b.txt", b"beta")
    api.put("picks", "docs/c.txt", b"gamma")
    page.goto(server.url + "/b/picks/docs/")
    expect(page.locator("[data-testid=zip-selected]")).to_be_disabled()
    page.locator("[data-testid=object-row][data-key='docs/a.txt'] [data-testid=select-row]").check()
    page.locator("[data-testid=object-row][data-key='docs/c.txt'] [data-testid=select-row]").check()
    with downloaded_zip(page, "zip-selected", tmp_path, "docs-selection.zip") as archive:
        assert archive.namelist() == ["a.txt", "c.txt"] and archive.read("c.txt") == b"gamma"
    assert sorted(api.keys("picks")) == ["docs/a.txt", "docs/b.txt", "docs/c.txt"]  # nothing deleted


def test_drop_a_folder_and_pick_a_folder(page, server, api, tmp_path):
    make_bucket(page, server, "folders")
    page.goto(server.url + "/b/folders/")
    drop(page, DROP_FOLDER, {"album": {"one.jpg": 10, "deep": {"two.jpg": 20}}})
    wait_all_done(page, 2)
    assert sorted(api.keys("folders")) == ["album/deep/two.jpg", "album/one.jpg"]
    assert api.file("folders", "album/deep/two.jpg")["sha256"] == hashlib.sha256(pattern(0, 20)).hexdigest()

    picked = tmp_path / "picked"
    (picked / "sub").mkdir(parents=True)
    (picked / "x.txt").write_bytes(b"x" * 5)
    (picked / "sub" / "y.txt").write_bytes(b"y" * 7)
    page.goto(server.url + "/b/folders/album/")  # into a folder: keys get its prefix
    pick(page, "folder-input", picked)
    wait_all_done(page, 2)
    assert api.file("folders", "album/picked/sub/y.txt")["bytes"] == 7
    assert api.file("folders", "album/picked/x.txt")["sha256"] == hashlib.sha256(b"x" * 5).hexdigest()


def test_pause_resume_and_resume_after_reload(page, server, api, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(data := os.urandom(64 * MIB))
    make_bucket(page, server, "large")
    offsets = []  # where each PATCH starts: what was sent is the size less the first of them
    page.on("request", lambda request: request.method == "PATCH" and offsets.append(
        int(request.headers["upload-offset"])))
    throttle_uploads(page, 24 * MIB)
    pick(page, "file-input", big)
    item = page.locator("[data-testid=upload-item]")
    bar = page.locator("[data-testid=upload-progress]")
    expect(item).to_have_attribute("data-state", "uploading")
    page.wait_for_function("() => document.querySelector('[data-testid=upload-progress]').value >= 10")
    expect(item.locator(".upload-stats")).to_contain_text("/s")  # while bytes move: speed, time left
    page.click("[data-testid=pause]")
    expect(item).to_have_attribute("data-state", "paused")
    paused_at = int(bar.get_attribute("data-percent"))
    expect(item.locator(".upload-stats")).not_to_contain_text("/s")  # paused: no speed, no time left
    expect(item.locator(".upload-stats")).not_to_contain_text("left")
    page.click("[data-testid=resume]")
    expect(item).to_have_attribute("data-state", "uploading")
    page.wait_for_function(f"() => document.querySelector('[data-testid=upload-progress]').value >= {paused_at + 20}")

    page.reload()  # the tab goes away mid-upload
    page.cdp = None
    throttle_uploads(page, 256 * MIB)
    offsets.clear()
    pick(page, "file-input", big)  # the same file, dropped again
    wait_all_done(page, 1)
    assert page.locator("[data-testid=upload-item]").get_attribute("data-resumed") == "true"
    assert "left" not in page.locator(".upload-stats").inner_text()  # done: no "0 s left"
    assert offsets[0] > 0  # resumed from the server's offset: fewer bytes sent than the file holds
    assert len(data) - offsets[0] < len(data)
    info = api.file("large", "big.bin")
    assert (info["bytes"], info["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def test_an_upload_cut_by_a_reload_is_listed_and_can_be_resumed_or_discarded(page, server, api, tmp_path):
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(data := os.urandom(24 * MIB))
    second.write_bytes(os.urandom(24 * MIB))
    make_bucket(page, server, "cut")
    unfinished = page.locator("[data-testid=unfinished-item]")
    for path in (first, second):
        throttle_uploads(page, 8 * MIB)
        pick(page, "file-input", path)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=upload-progress]')]"
                               ".some((bar) => bar.value >= 10 && bar.value < 100)")
        page.reload()  # the page goes away mid-upload
        page.cdp = None
        page.wait_for_selector("[data-testid=dropzone][data-unfinished-ready=true]")
    expect(unfinished).to_have_count(2)
    deletes = []
    page.on("response", lambda response: response.request.method == "DELETE" and deletes.append(
        (response.url, response.status)))
    row = unfinished.filter(has_text="first.bin")
    expect(row).to_contain_text("% of 24.0 MiB sent")
    unfinished.filter(has_text="second.bin").locator("[data-testid=unfinished-discard]").click()
    expect(unfinished).to_have_count(1)
    assert len(deletes) == 1 and deletes[0][1] == 204  # the server freed what it held (tus termination)
    assert api.session_status(deletes[0][0]) == 404
    throttle_uploads(page, 512 * MIB)
    row.locator("[data-testid=unfinished-pick]").set_input_files(str(first))
    expect(unfinished).to_have_count(0)
    expect(page.locator("#unfinished")).to_be_hidden()
    wait_all_done(page, 1)
    assert page.locator("[data-testid=upload-item]").get_attribute("data-resumed") == "true"
    info = api.file("cut", "first.bin")
    assert (info["bytes"], info["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert api.keys("cut") == ["first.bin"]  # the discarded one never became a file
    page.reload()
    page.wait_for_selector("[data-testid=dropzone][data-unfinished-ready=true]")
    expect(unfinished).to_have_count(0)  # finished and discarded: nothing left to list


def test_two_tabs_sending_the_same_file_do_not_fight_over_it(page, context, server, api, tmp_path):
    path = tmp_path / "shared.bin"
    path.write_bytes(data := os.urandom(16 * MIB))
    make_bucket(page, server, "tabs")
    other = context.new_page()
    other.console_errors = []
    other.on("pageerror", lambda error: other.console_errors.append(str(error)))
    locked = []
    other.on("response", lambda response: response.status == 423 and locked.append(response.url))
    other.goto(server.url + "/b/tabs/")
    throttle_uploads(page, 4 * MIB)
    pick(page, "file-input", path)
    page.wait_for_function("() => document.querySelector('[data-testid=upload-progress]').value >= 5")
    pick(other, "file-input", path)  # the same file, in a second tab, while the first sends it
    waiting = other.locator("[data-testid=upload-item]")
    expect(waiting).to_have_attribute("data-state", "elsewhere")
    expect(waiting.locator(".upload-status")).to_contain_text("another tab")
    throttle_uploads(page, 512 * MIB)
    wait_all_done(page, 1)
    expect(waiting).to_have_attribute("data-state", "done", timeout=30_000)
    expect(waiting.locator(".upload-status")).to_have_text("Uploaded by the other tab")
    assert locked == [] and other.console_errors == []  # no 423 storm, no error
    info = api.file("tabs", "shared.bin")
    assert (info["bytes"], info["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def test_network_cut_and_back(page, server, api, tmp_path):
    path = tmp_path / "trip.bin"
    path.write_bytes(data := os.urandom(24 * MIB))
    make_bucket(page, server, "offline")
    throttle_uploads(page, 8 * MIB)
    pick(page, "file-input", path)
    page.wait_for_function("() => document.querySelector('[data-testid=upload-progress]').value >= 20")
    throttle_uploads(page, 8 * MIB, offline=True)
    expect(page.locator("[data-testid=upload-item]")).to_have_attribute("data-state", "error")
    assert page.evaluate("() => navigator.onLine") is False
    throttle_uploads(page, 64 * MIB)
    wait_all_done(page, 1)
    assert api.file("offline", "trip.bin")["sha256"] == hashlib.sha256(data).hexdigest()
    page.console_errors.clear()  # the browser logs the requests the cut network refused


def test_conflict_choices(page, server, api):
    api.put("clash", "same.txt", b"old")
    page.goto(server.url + "/b/clash/")
    for choice, expected in (("conflict-keep-both", "same (1).txt"), ("conflict-replace", "same.txt")):
        drop(page, DROP_FILES, ["same.txt"], [4])
        page.locator(f"[data-testid=upload-item] [data-testid={choice}]").last.click()
        expect(page.locator(f"[data-testid=upload-item][data-key='{expected}'][data-state=done]")).to_have_count(1)
    assert sorted(api.keys("clash")) == ["same (1).txt", "same.txt"]
    assert api.file("clash", "same.txt")["bytes"] == 4  # replaced
    drop(page, DROP_FILES, ["same.txt"], [9])
    page.locator("[data-testid=upload-item] [data-testid=conflict-skip]").last.click()
    expect(page.locator("[data-testid=upload-item][data-state=done]")).to_have_count(3)
    assert api.file("clash", "same.txt")["bytes"] == 4  # skipped: unchanged


def test_a_conflict_shows_the_existing_file_and_one_answer_serves_every_clash(page, server, api):
    api.put("clashes", "a.txt", b"1")
    api.put("clashes", "a (1).txt", b"22")
    api.put("clashes", "b.txt", b"333")
    page.goto(server.url + "/b/clashes/")
    drop(page, DROP_FILES, ["a.txt", "b.txt", "c.txt"], [4, 5, 6])
    first = page.locator("[data-testid=upload-item]:has(.conflict:not([hidden]))").first
    expect(first.locator("[data-testid=conflict-existing]")).to_contain_text(" B, ")  # its size and date
    first.locator("[data-testid=conflict-all]").check()
    first.locator("[data-testid=conflict-keep-both]").click()
    wait_all_done(page, 3)
    # "a (1).txt" existed: the next free name, without a second question; "b.txt" took the same answer.
    assert sorted(api.keys("clashes")) == ["a (1).txt", "a (2).txt", "a.txt", "b (1).txt", "b.txt", "c.txt"]
    assert api.file("clashes", "a.txt")["bytes"] == 1 and api.file("clashes", "a (2).txt")["bytes"] == 4


def test_browse_sort_filter_and_page(page, server, api):
    for index in range(250):
        api.put("many", f"f{index:03}.txt", b"x" * (index + 1))
    api.put("many", "docs/inner/deep.txt", b"deep")
    page.goto(server.url + "/b/many/")
    rows = page.locator("[data-testid=object-row]")
    expect(page.locator("[data-testid=folder-row][data-prefix='docs/']")).to_have_count(1)
    expect(rows).to_have_count(99)  # a page holds 100 entries: the folder and 99 files
    page.click("[data-testid=next-page]")
    expect(rows).to_have_count(100)
    expect(rows.first).to_have_attribute("data-key", "f099.txt")
    page.click("[data-testid=next-page]")
    expect(rows).to_have_count(51)
    expect(page.locator("[data-testid=next-page]")).to_have_count(0)
    expect(page.locator(".pager")).to_contain_text("251 files in this bucket")
    page.click("[data-testid=previous-page]")  # back: the same second page as going forward
    expect(rows).to_have_count(100)
    expect(rows.first).to_have_attribute("data-key", "f099.txt")
    page.click("[data-testid=previous-page]")
    expect(page.locator("[data-testid=folder-row][data-prefix='docs/']")).to_have_count(1)
    expect(rows).to_have_count(99)
    expect(page.locator("[data-testid=previous-page]")).to_have_count(0)  # the first page has none
    page.click("[data-testid=next-page]")
    page.click("[data-testid=next-page]")
    page.click("[data-testid=first-page]")
    expect(rows).to_have_count(99)
    page.click("[data-testid=last-page]")  # the last 100 entries, straight from the first page
    expect(rows).to_have_count(100)
    expect(rows.last).to_have_attribute("data-key", "f249.txt")
    expect(page.locator("[data-testid=next-page]")).to_have_count(0)
    page.click("[data-testid=first-page]")
    page.click("[data-testid=next-page]")
    page.click("[data-testid=next-page]")  # the last page again, for what follows
    expect(rows).to_have_count(51)

    page.click("th button:has-text('Size')")  # ascending by size
    page.click("th button:has-text('Size')")  # descending
    expect(rows.first).to_have_attribute("data-key", "f249.txt")
    page.keyboard.press("/")
    page.keyboard.type("f24")
    expect(page.locator("[data-testid=object-row]:visible")).to_have_count(10)

    page.goto(server.url + "/b/many/")
    page.click("[data-testid=folder-row] a")
    page.click("[data-testid=folder-row][data-prefix='docs/inner/'] a")
    expect(page.locator("[data-testid=object-row]")).to_have_attribute("data-key", "docs/inner/deep.txt")
    page.locator("[data-testid=breadcrumb]", has_text="docs").click()
    expect(page).to_have_url(re.compile("/b/many/docs/$"))
    page.locator("[data-testid=breadcrumb]", has_text="many").click()
    expect(page).to_have_url(re.compile("/b/many/$"))


def test_select_all_bulk_delete_and_single_delete(page, server, api):
    for key in ("a.txt", "b.txt", "c.txt", "keep/me.txt"):
        api.put("tidy", key, b"bye")
    page.goto(server.url + "/b/tidy/")
    page.check("[data-testid=select-all]")
    page.click("[data-testid=delete-selected]")
    expect(page.locator("#confirm-message")).to_contain_text("Delete 3 selected file(s)")
    page.click("[data-testid=confirm-delete]")
    expect(page.locator(".flash-ok")).to_contain_text("Deleted 3 files")
    assert api.keys("tidy") == ["keep/me.txt"]

    page.goto(server.url + "/b/tidy/keep/me.txt")
    page.click("[data-testid=delete]")
    page.click("[data-testid=confirm-delete]")
    expect(page.locator(".flash-ok")).to_contain_text("Deleted 1 file")
    assert api.keys("tidy") == []


def test_uploaded_html_and_svg_never_run(page, server, api):
    api.put("evil", "page.html", b"<script>alert('html ran')</script><h1>hi</h1>", "text/html")
    api.put("evil", "pic.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(\'svg ran\')">'
                               b"<script>alert('svg script ran')</script><rect width='9' height='9'/></svg>",
            "image/svg+xml")
    for key in ("page.html", "pic.svg"):
        page.goto(f"{server.url}/b/evil/{key}")
        expect(page.locator("[data-testid=preview]")).to_be_visible()
        page.wait_for_load_state("networkidle")
    expect(page.locator("[data-testid=preview] pre")).to_have_count(0)  # the SVG is an <img>
    page.goto(f"{server.url}/b/evil/page.html")
    expect(page.locator("[data-testid=preview] pre")).to_contain_text("<script>alert('html ran')</script>")
    assert page.dialogs == []


PAGES = [("buckets", "/"), ("bucket", "/b/look/"), ("folder", "/b/look/photos/"), ("file", "/b/look/notes.txt"),
         ("search", "/b/look/?q=cat"), ("delete-folder", "/b/look/delete-folder?prefix=photos/"),
         ("markdown", "/b/look/readme.md"), ("share-new", "/b/look/share?key=notes.txt"),
         ("request-files", "/b/look/share?prefix=photos/&upload=1"), ("shared-links", "/shares"),
         ("quotas", "/quotas")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_are_accessible_and_clean(browser, server, api, scheme):
    from pathlib import Path

    api.put("look", "notes.txt", b"Plain text, shown as a preview.\n" * 5)
    api.put("look", "readme.md", b"# Read me\n\nSome *text*, a [link](https://example.com) and a list:\n\n"
                                 b"- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    api.put("look", "photos/cat.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="9"/></svg>', "image/svg+xml")
    axe = (Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js").read_text()
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    SCREENSHOTS.mkdir(exist_ok=True)
    for name, path in PAGES:
        page.goto(server.url + path)
        page.evaluate(axe)  # through DevTools: the page's CSP rightly forbids inline scripts
        violations = page.evaluate("async () => (await axe.run()).violations.map(v => v.id + ': ' + v.help)")
        assert violations == [], (name, violations)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{scheme}.png"), full_page=True)
    page.goto(server.url + "/b/look/")
    drop(page, DROP_FILES, ["shot.bin"], [10])
    wait_all_done(page, 1)
    page.screenshot(path=str(SCREENSHOTS / f"uploads-{scheme}.png"), full_page=True)
    context.close()
    # A phone: the same pages at 390x844, still clean for axe.
    phone = browser.new_context(color_scheme=scheme, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    for name, path in (("bucket", "/b/look/"), ("file", "/b/look/readme.md")):
        page.goto(server.url + path)
        page.evaluate(axe)
        violations = page.evaluate("async () => (await axe.run()).violations.map(v => v.id + ': ' + v.help)")
        assert violations == [], (name, "phone", violations)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-phone-{scheme}.png"), full_page=True)
    phone.close()
    assert errors == []


def test_errors_are_friendly_pages(page, server):
    response = page.goto(server.url + "/b/nope/")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    page.console_errors.clear()  # the browser logs the 404 of the page itself
    assert "Traceback" not in page.content()


def test_sign_in_upload_and_sign_out(page, server, tmp_path):
    """Once a user exists the pages ask to sign in; the browser's tus uploads then carry the
    session cookie and the page's CSRF token."""
    from tests.helpers import flask_files_ok

    flask_files_ok(server, "user", "create", "--name", "ada", "--password", "correct horse")
    page.goto(server.url + "/")
    expect(page).to_have_url(re.compile("/login"))
    page.console_errors.clear()
    page.fill("#username", "ada")
    page.fill("#password", "wrong password")
    page.click("[data-testid=sign-in]")
    expect(page.locator(".flash-error")).to_contain_text("do not match")
    page.console_errors.clear()  # the 401 of the refused sign-in
    page.fill("#username", "ada")
    page.fill("#password", "correct horse")
    page.click("[data-testid=sign-in]")
    expect(page.locator("[data-testid=open-banner]")).to_have_count(0)
    make_bucket(page, server, "private")
    drop(page, DROP_FILES, ["secret.txt"], [1000])
    wait_all_done(page, 1)
    row = page.locator("[data-testid=object-row][data-key='secret.txt']")
    expect(row).to_have_count(1)
    row.locator("summary").click()
    row.locator("[data-testid=row-info]").click()
    expect(page.locator("[data-testid=info-panel] [data-field=uploaded_by]")).to_have_text("ada")
    page.goto(server.url + "/b/private/secret.txt")  # copied by ada: hers too, and her flash says so
    page.fill("[data-testid=move-to]", "copies/secret.txt")
    with page.expect_navigation():
        page.click("[data-testid=copy]")
    expect(page.locator("[data-testid=flash]").first).to_contain_text("Copied to copies/secret.txt")
    expect(page.locator("[data-testid=uploaded-by]")).to_have_text("ada")
    page.goto(server.url + "/b/private/")
    expect(page.locator("[data-testid=position]")).to_have_text("1–2 of 2")  # copies/ and secret.txt
    page.click("[data-testid=sign-out]")
    expect(page).to_have_url(re.compile("/login"))


def test_search_finds_files_in_every_folder(page, server, api):
    for key in ("2024/Beach-Day.jpg", "2024/city.png", "trips/x/beach_notes.txt", "beach.md", "other.txt"):
        api.put("finds", key, key.encode())
    page.goto(server.url + "/b/finds/")
    page.fill("[data-testid=search]", "BEACH")
    page.press("[data-testid=search]", "Enter")
    rows = page.locator("[data-testid=object-row]")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.key)") == [
        "2024/Beach-Day.jpg", "beach.md", "trips/x/beach_notes.txt"]
    expect(page.locator("[data-testid=search-status]")).to_contain_text("BEACH")
    expect(page.locator("[data-testid=folder-row]")).to_have_count(0)
    expect(page.locator("[data-testid=search]")).to_have_value("BEACH")
    # Within a folder, the folder alone; and nothing found says so.
    page.goto(server.url + "/b/finds/2024/")
    page.fill("[data-testid=search]", "beach")
    page.press("[data-testid=search]", "Enter")
    expect(page.locator("[data-testid=object-row]")).to_have_count(1)
    page.fill("[data-testid=search]", "nothing-like-it")
    page.press("[data-testid=search]", "Enter")
    expect(page.locator("[data-testid=no-results]")).to_contain_text("nothing-like-it")
    page.click("[data-testid=clear-search]")
    expect(page.locator("[data-testid=object-row]")).to_have_count(2)


def test_search_results_page_on(page, server, api):
    for index in range(5):
        api.put("many", f"f/hit-{index}.txt", b"x")
        api.put("many", f"g/miss-{index}.txt", b"x")
    page.goto(server.url + "/b/many/?q=hit&limit=2")
    keys = []
    for _ in range(3):
        keys += page.locator("[data-testid=object-row]").evaluate_all("rows => rows.map(r => r.dataset.key)")
        if page.locator("[data-testid=next-page]").count() == 0:
            break
        page.click("[data-testid=next-page]")
    assert keys == [f"f/hit-{index}.txt" for index in range(5)]
    expect(page.locator("[data-testid=first-page]")).to_be_visible()


def test_rename_a_file_move_a_folder_and_delete_a_folder(page, server, api):
    api.put("org", "inbox/report.txt", b"the report")
    api.put("org", "inbox/scans/a.pdf", b"%PDF-1.4 a")
    api.put("org", "inbox/scans/b.pdf", b"%PDF-1.4 b")
    page.goto(server.url + "/b/org/inbox/report.txt")
    page.fill("[data-testid=move-to]", "done/report-2024.txt")
    page.click("[data-testid=move]")
    expect(page).to_have_url(re.compile("/b/org/done/report-2024.txt$"))
    expect(page.locator("h1")).to_have_text("report-2024.txt")
    assert api.keys("org") == ["done/report-2024.txt", "inbox/scans/a.pdf", "inbox/scans/b.pdf"]

    page.goto(server.url + "/b/org/inbox/")
    page.fill("[data-testid=move-folder-to]", "archive/scans/")
    page.click("[data-testid=move-folder]")  # inbox/ (its scans/ folder) becomes archive/scans/
    expect(page.locator("[data-testid=flash]").first).to_contain_text("Moved 2 files")
    assert api.keys("org") == ["archive/scans/scans/a.pdf", "archive/scans/scans/b.pdf", "done/report-2024.txt"]

    page.goto(server.url + "/b/org/archive/scans/")
    page.fill("[data-testid=move-folder-to]", "backup/")
    with page.expect_navigation():
        page.click("[data-testid=copy-folder]")  # a copy: the folder stays where it was
    expect(page.locator("[data-testid=flash]").first).to_contain_text("Copied 2 files to backup/")
    assert api.keys("org") == ["archive/scans/scans/a.pdf", "archive/scans/scans/b.pdf", "backup/scans/a.pdf",
                               "backup/scans/b.pdf", "done/report-2024.txt"]
    assert api.file("org", "backup/scans/b.pdf")["sha256"] == api.file("org", "archive/scans/scans/b.pdf")["sha256"]

    page.goto(server.url + "/b/org/archive/")
    page.click("[data-testid=delete-folder]")
    expect(page.locator("[data-testid=folder-count]")).to_contain_text("2 files")
    page.click("[data-testid=confirm-delete-folder]")
    expect(page.locator("[data-testid=flash]").first).to_contain_text("Deleted")
    assert "done/report-2024.txt" in api.keys("org")
    assert not any(key.startswith("archive/scans/") for key in api.keys("org"))


def png(color: tuple, size=(64, 48)) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def test_icons_thumbnails_grid_and_the_viewer(page, server, api):
    api.put("gallery", "a.png", png((255, 0, 0)), "image/png")
    api.put("gallery", "b.png", png((0, 255, 0)), "image/png")
    api.put("gallery", "broken.png", b"not an image at all", "image/png")  # a placeholder, no console error
    api.put("gallery", "notes.txt", b"text", "text/plain")
    api.put("gallery", "sub/c.png", png((0, 0, 255)), "image/png")
    page.goto(server.url + "/b/gallery/")
    thumbs = page.locator("[data-testid=thumbnail]")
    expect(thumbs).to_have_count(3)
    page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every((i) => i.complete)")
    assert page.evaluate("() => document.querySelector('img.thumb').naturalWidth") == 64  # the thumbnail, 64 px
    expect(page.locator("[data-testid=object-row][data-key='notes.txt'] .icon-text")).to_have_count(1)
    expect(page.locator("[data-testid=folder-row] .icon-folder")).to_have_count(1)

    page.click("[data-testid=view-toggle]")  # grid, remembered
    expect(page.locator("#listing.grid")).to_have_count(1)
    page.reload()
    expect(page.locator("#listing.grid")).to_have_count(1)
    expect(page.locator("[data-testid=view-toggle]")).to_have_text("List view")

    page.click("[data-testid=object-row][data-key='a.png'] a[data-view]")
    viewer = page.locator("[data-testid=lightbox]")
    expect(viewer).to_be_visible()
    expect(page.locator("[data-testid=lightbox-name]")).to_have_text("a.png")
    page.keyboard.press("ArrowRight")
    expect(page.locator("[data-testid=lightbox-name]")).to_have_text("b.png")
    page.click("[data-testid=lightbox-next]")
    expect(page.locator("[data-testid=lightbox-name]")).to_have_text("broken.png")
    page.keyboard.press("ArrowRight")  # round to the first
    expect(page.locator("[data-testid=lightbox-name]")).to_have_text("a.png")
    page.wait_for_function("() => document.querySelector('[data-testid=lightbox-media]').naturalWidth === 64")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    page.click("[data-testid=view-toggle]")  # back to the list for the next test's eyes
    expect(page.locator("#listing.grid")).to_have_count(0)


def test_the_list_works_from_the_keyboard(page, server, api):
    for name in ("a.txt", "b.txt", "c.txt"):
        api.put("keys", name, name.encode())
    api.put("keys", "sub/d.txt", b"d")
    page.goto(server.url + "/b/keys/")
    page.focus("#listing tbody tr")  # the first row takes focus (Tab reaches it too)
    focused = "() => document.activeElement.dataset.key || document.activeElement.dataset.prefix"
    assert page.evaluate(focused) == "sub/"
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused) == "a.txt"
    page.keyboard.press("End")
    assert page.evaluate(focused) == "c.txt"
    page.keyboard.press("k")
    assert page.evaluate(focused) == "b.txt"
    page.keyboard.press(" ")  # select b.txt
    expect(page.locator("#selection-count")).to_have_text("1 selected")
    page.keyboard.press("Home")
    page.keyboard.press("j")
    page.keyboard.press("Delete")  # the selection (b.txt), not the row in hand
    with page.expect_navigation():
        page.click("[data-testid=confirm-delete]")
    expect(page.locator("[data-testid=flash]").first).to_contain_text("Deleted 1 file")
    assert api.keys("keys") == ["a.txt", "c.txt", "sub/d.txt"]
    page.focus("#listing tbody tr[data-key='c.txt']")
    page.keyboard.press("Delete")  # nothing selected: the row in hand
    with page.expect_navigation():  # (the last page's message says the same: wait for the new one)
        page.click("[data-testid=confirm-delete]")
    expect(page.locator("[data-testid=flash]").first).to_contain_text("Deleted 1 file")
    assert api.keys("keys") == ["a.txt", "sub/d.txt"]
    page.focus("#listing tbody tr[data-key='a.txt']")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile("/b/keys/a.txt$"))


def test_a_rows_menu_and_the_info_panel(page, server, api):
    import hashlib

    api.put("menu", "one.txt", b"first file")
    api.put("menu", "two.txt", b"second")
    page.goto(server.url + "/b/menu/")
    page.check("[data-testid=object-row][data-key='one.txt'] [data-testid=select-row]")  # another file selected
    row = page.locator("[data-testid=object-row][data-key='two.txt']")
    row.locator("summary").click()
    row.locator("[data-testid=row-info]").click()
    panel = page.locator("[data-testid=info-panel]")
    expect(panel).to_be_visible()
    expect(panel.locator("[data-field=sha256]")).to_have_text(hashlib.sha256(b"second").hexdigest())
    expect(panel.locator("[data-field=size]")).to_contain_text("6 B")
    expect(panel.locator("[data-field=uploaded_by]")).to_contain_text("open service")
    page.click("[data-testid=info-close]")
    expect(panel).to_be_hidden()
    download = row.locator("[data-testid=row-download]").get_attribute("href")
    assert download.endswith("/v1/content/menu/two.txt?download=1")
    row.locator("summary").click()
    row.locator("[data-testid=row-delete]").click()  # this row alone, whatever else was selected
    expect(page.locator("#confirm-message")).to_contain_text("Delete 1 selected file")
    with page.expect_navigation():
        page.click("[data-testid=confirm-delete]")
    expect(page.locator("[data-testid=flash]").first).to_contain_text("Deleted 1 file")
    assert api.keys("menu") == ["one.txt"]
    row = page.locator("[data-testid=object-row][data-key='one.txt']")
    row.locator("summary").click()
    row.locator("[data-testid=row-move]").click()
    expect(page).to_have_url(re.compile("/b/menu/one.txt#move$"))
    expect(page.locator("[data-testid=move-to]")).to_have_value("one.txt")


def test_a_new_folder_is_a_page_to_upload_into(page, server, api):
    api.put("nf", "top.txt", b"top")
    page.goto(server.url + "/b/nf/")
    page.click("[data-testid=new-folder]")
    page.fill("[data-testid=new-folder-name]", "reports 2024")
    page.click("[data-testid=create-folder]")
    expect(page).to_have_url(re.compile("/b/nf/reports%202024/$"))
    expect(page.locator("[data-testid=dropzone]")).to_have_attribute("data-prefix", "reports 2024/")
    drop(page, DROP_FILES, ["q1.csv"], [10])
    wait_all_done(page, 1)
    assert api.keys("nf") == ["reports 2024/q1.csv", "top.txt"]
    page.goto(server.url + "/b/nf/new-folder?prefix=&name=..")  # not a name a key can hold
    expect(page.locator("[data-testid=flash]").first).to_contain_text("cannot be used")
    expect(page).to_have_url(re.compile("/b/nf/$"))


def test_a_selection_spans_pages(page, server, api):
    for name in ("a", "b", "c", "d", "e"):
        api.put("span", f"{name}.txt", name.encode())
    page.goto(server.url + "/b/span/?limit=2")
    page.check("[data-testid=object-row][data-key='a.txt'] [data-testid=select-row]")
    page.click("[data-testid=next-page]")
    page.check("[data-testid=object-row][data-key='d.txt'] [data-testid=select-row]")
    expect(page.locator("#selection-count")).to_have_text("2 selected (1 on other pages)")
    page.click("[data-testid=previous-page]")  # still chosen when the page comes back
    expect(page.locator("[data-testid=object-row][data-key='a.txt'] [data-testid=select-row]")).to_be_checked()
    page.click("[data-testid=next-page]")
    page.click("[data-testid=delete-selected]")
    expect(page.locator("#confirm-message")).to_contain_text("Delete 2 selected")
    with page.expect_navigation():
        page.click("[data-testid=confirm-delete]")
    assert api.keys("span") == ["b.txt", "c.txt", "e.txt"]
    expect(page.locator("#selection-count")).to_have_text("")  # what was deleted is selected no more
    page.check("[data-testid=select-row] >> nth=0")
    page.click("[data-testid=clear-selection]")
    expect(page.locator("#selection-count")).to_have_text("")
