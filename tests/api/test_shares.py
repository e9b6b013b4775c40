"""Share links through the API and the public routes (in-process, both configurations): files,
folders, zips, passwords, expiry, revocation, download limits, file requests and their limits, and
a share that dies with its creator's access."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest

from tests.helpers import assert_error, bearer, make_token, put

TUS = {"Tus-Resumable": "1.0.0"}


def share(client, headers=None, **fields):
    return client.post("/v1/shares", data=json.dumps(fields), headers=headers or {})


def path_of(url: str) -> str:
    return url.removeprefix("http://localhost")


def tus_upload(client, link: str, name: str, data: bytes) -> int:
    """A file request's upload as tus-js-client makes it: creation, then one PATCH."""
    made = client.post(f"{link}/uploads", headers={**TUS, "Upload-Length": str(len(data)),
                                                  "Upload-Metadata": "filename " + base64.b64encode(
                                                      name.encode()).decode()})
    if made.status_code != 201:
        return made.status_code
    sent = client.patch(path_of(made.headers["Location"]), data=data, headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    return sent.status_code


def test_a_file_link_opens_without_signing_in_and_serves_ranges_with_safe_headers(client, runner):
    put(client, "docs", "2024/report.pdf", b"%PDF-1.4 the report")
    put(client, "docs", "page.html", b"<script>alert(1)</script>")
    admin = bearer(make_token(runner, "admin"))  # the service is closed from here on
    made = share(client, admin, bucket="docs", key="2024/report.pdf", expires_in=3600)
    assert made.status_code == 201
    body = made.get_json()
    assert body["id"].startswith("shr_") and body["state"] == "active" and body["downloads"] == 0
    link = path_of(body["url"])
    assert re.fullmatch(r"/s/[A-Za-z0-9_-]{24}", link)  # 144 bits
    page = client.get(link)
    assert page.status_code == 200 and "report.pdf" in page.get_data(as_text=True)
    ranged = client.get(f"{link}/f/report.pdf", headers={"Range": "bytes=5-7"})
    assert (ranged.status_code, ranged.data) == (206, b"1.4")
    whole = client.get(f"{link}/f/report.pdf?download=1")
    assert whole.data == b"%PDF-1.4 the report" and whole.headers["Content-Disposition"].startswith("attachment")
    assert whole.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in whole.headers["Content-Security-Policy"]
    assert client.get(f"{link}/f/other.pdf").status_code == 404  # only the shared file
    html = share(client, admin, bucket="docs", key="page.html").get_json()
    served = client.get(f"{path_of(html['url'])}/f/page.html")
    assert served.headers["Content-Disposition"].startswith("attachment")  # never rendered inline
    assert client.get(f"/v1/shares/{body['id']}", headers=admin).get_json()["downloads"] == 1  # the whole GET
    assert client.get("/s/AAAAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert_error(client.get("/v1/files/docs"), 401, "unauthorized")  # the link opens that file alone


def test_a_folder_link_lists_pages_and_zips_only_its_folder(client):
    for key in ("pics/a.jpg", "pics/2024/b.jpg", "pics-old/c.jpg", "other/d.txt"):
        put(client, "b", key, key.encode())
    link = path_of(share(client, bucket="b", prefix="pics/").get_json()["url"])
    page = client.get(link).get_data(as_text=True)
    assert "a.jpg" in page and "2024/" in page and "c.jpg" not in page and "d.txt" not in page
    assert "b.jpg" in client.get(f"{link}?path=2024/").get_data(as_text=True)
    assert client.get(f"{link}/f/2024/b.jpg").data == b"pics/2024/b.jpg"
    assert client.get(f"{link}/f/../other/d.txt").status_code in (400, 404)  # refused as a key, or not found
    assert client.get(f"{link}?path=../other/").status_code == 404
    zipped = client.get(f"{link}/zip")
    import io
    import zipfile

    assert sorted(zipfile.ZipFile(io.BytesIO(zipped.data)).namelist()) == ["2024/b.jpg", "a.jpg"]


def test_a_password_comes_first_and_wrong_ones_are_throttled(client):
    put(client, "b", "secret.txt", b"the secret")
    link = path_of(share(client, bucket="b", key="secret.txt", password="open sesame").get_json()["url"])
    assert "needs a password" in client.get(link).get_data(as_text=True)
    assert_error(client.get(f"{link}/f/secret.txt"), 401, "unauthorized")
    assert client.post(link, data={"password": "wrong"}).status_code == 401
    right = client.post(link, data={"password": "open sesame"})
    assert right.status_code == 302 and "HttpOnly" in right.headers["Set-Cookie"]
    assert "SameSite=Strict" in right.headers["Set-Cookie"]
    assert client.get(f"{link}/f/secret.txt").data == b"the secret"
    other = path_of(share(client, bucket="b", key="secret.txt", password="another one").get_json()["url"])
    for _ in range(10):
        client.post(other, data={"password": "guess"})
    assert client.post(other, data={"password": "another one"}).status_code == 429  # even the right one, for now


def test_expired_revoked_and_used_up_links_answer_410_and_gc_forgets_them(client, services, runner):
    put(client, "b", "f.txt", b"file")
    made = share(client, bucket="b", key="f.txt", max_downloads=2).get_json()
    link = path_of(made["url"])
    assert client.get(f"{link}/f/f.txt").status_code == 200
    assert client.get(f"{link}/f/f.txt", headers={"Range": "bytes=2-"}).status_code == 206  # resumed: not counted
    assert client.get(f"{link}/f/f.txt", headers={"If-Match": '"wrong"'}).status_code == 412  # not counted
    assert client.get(f"{link}/f/f.txt").status_code == 200
    gone = client.get(f"{link}/f/f.txt")
    assert_error(gone, 410, "share_exhausted")
    assert client.get(link).status_code == 410 and "no longer works" in client.get(link).get_data(as_text=True)
    revoked = share(client, bucket="b", key="f.txt").get_json()
    assert client.delete(f"/v1/shares/{revoked['id']}").get_json()["state"] == "revoked"
    assert_error(client.get(f"{path_of(revoked['url'])}/f/f.txt"), 410, "share_revoked")
    short = share(client, bucket="b", key="f.txt", expires_in=60).get_json()
    services.shares.clock = lambda: time.time() + 61
    assert_error(client.get(f"{path_of(short['url'])}/f/f.txt"), 410, "share_expired")
    assert services.collect_garbage(grace=0)["dead_shares"] == 3
    assert client.get(path_of(short["url"])).status_code == 404


def test_a_share_dies_with_its_creators_access(app, client, runner):
    put(client, "mine", "a.txt", b"a")
    put(client, "theirs", "b.txt", b"b")
    writer = bearer(make_token(runner, "write"))
    confined = bearer(make_token(runner, "write", bucket="mine"))
    reader = bearer(make_token(runner, "read"))
    assert_error(share(client, reader, bucket="mine", key="a.txt"), 403, "forbidden")  # sharing changes who may read
    assert_error(share(client, confined, bucket="theirs", key="b.txt"), 403, "forbidden")
    link = path_of(share(client, writer, bucket="mine", key="a.txt").get_json()["url"])
    assert client.get(f"{link}/f/a.txt").status_code == 200
    assert client.get("/v1/shares", headers=confined).get_json()["data"] == []  # not theirs
    from sqlalchemy import update

    from files_app.models import ApiToken, db, transaction

    with app.app_context(), transaction():  # the token narrowed to another bucket
        db.session.execute(update(ApiToken).where(ApiToken.name == "write-test").values(bucket="theirs"))
    assert_error(client.get(f"{link}/f/a.txt"), 410, "share_revoked")


def test_a_file_request_takes_uploads_keeps_both_and_stops_at_its_limit(client):
    put(client, "inbox", "req/taken.txt", b"already here")
    made = share(client, bucket="inbox", prefix="req/", allow_upload=True, upload_max_bytes=100).get_json()
    assert made["listing"] is False
    link = path_of(made["url"])
    page = client.get(link).get_data(as_text=True)
    assert 'data-testid="share-dropzone"' in page and "taken.txt" not in page  # others' files unseen
    assert tus_upload(client, link, "taken.txt", b"mine") == 204
    assert tus_upload(client, link, "../../escape.txt", b"x") == 204  # the name alone is kept
    assert tus_upload(client, link, "taken.txt", b"again") == 204
    keys = [e["key"] for e in client.get("/v1/files/inbox").get_json()["data"]]
    assert keys == ["req/escape.txt", "req/taken (1).txt", "req/taken (2).txt", "req/taken.txt"]
    assert client.get("/v1/content/inbox/req/taken.txt").data == b"already here"  # never replaced
    assert client.get(f"{link}/f/taken.txt").status_code == 403  # nor read through the link
    assert tus_upload(client, link, "big.bin", b"z" * 91) == 507  # 10 bytes sent so far: 91 more would pass
    assert tus_upload(client, link, "fits.bin", b"z" * 80) == 204
    info = client.get(f"/v1/shares/{made['id']}").get_json()
    assert info["uploaded_bytes"] == 90
    assert client.get("/v1/files/inbox/req/fits.bin").get_json()["uploaded_by"] == f"a file request ({made['id']})"


def test_bad_share_requests(client):
    put(client, "b", "f.txt", b"f")
    file = {"bucket": "b", "key": "f.txt"}
    for fields, code in (({"bucket": "b"}, "invalid_share"), ({**file, "prefix": ""}, "invalid_share"),
                         ({"bucket": "b", "prefix": "x"}, "invalid_prefix"),
                         ({**file, "expires_in": 10}, "invalid_expires_in"),
                         ({**file, "expires_in": 60, "expires_at": 9999999999}, "invalid_expiry"),
                         ({"bucket": "b", "key": "f.txt", "max_downloads": 0}, "invalid_max_downloads"),
                         ({"bucket": "b", "key": "f.txt", "allow_upload": True}, "invalid_allow_upload"),
                         ({"bucket": "b", "prefix": "", "upload_max_bytes": 5}, "invalid_upload_max_bytes"),
                         ({"bucket": "b", "key": "f.txt", "password": ""}, "invalid_password")):
        assert_error(share(client, **fields), 400, code)
    assert_error(share(client, bucket="b", key="nope.txt"), 404, "not_found")
    assert_error(share(client, bucket="none", prefix=""), 404, "not_found")
    assert_error(client.get("/v1/shares/shr_0000000000000000"), 404, "not_found")


@pytest.mark.parametrize("deployment", ["local"], indirect=True)
def test_a_link_made_while_open_dies_when_the_service_closes(client, runner):
    put(client, "b", "f.txt", b"f")
    link = path_of(share(client, bucket="b", key="f.txt").get_json()["url"])
    assert client.get(f"{link}/f/f.txt").status_code == 200
    make_token(runner, "read")
    assert_error(client.get(f"{link}/f/f.txt"), 410, "share_revoked")


def test_a_shared_file_has_the_file_pages_safe_previews(client):
    put(client, "b", "notes/read.md", b"# Title\n\n![diagram](diagram.png) <script>alert(1)</script>", "text/markdown")
    put(client, "b", "notes/data.csv", b"a,b\n1,<i>2</i>\n", "text/csv")
    put(client, "b", "notes/limited.md", b"# Secret", "text/markdown")
    page = client.get(path_of(share(client, bucket="b", key="notes/read.md").get_json()["url"])).get_data(as_text=True)
    assert "<h1>Title</h1>" in page and "&lt;script&gt;" in page and "<script>alert" not in page
    assert "<img" not in page.split('data-testid="markdown-preview"')[1].split("</div>")[0]  # another file: not shown
    csv = client.get(path_of(share(client, bucket="b", key="notes/data.csv").get_json()["url"])).get_data(as_text=True)
    assert 'data-testid="csv-preview"' in csv and "&lt;i&gt;2&lt;/i&gt;" in csv
    limited = share(client, bucket="b", key="notes/limited.md", max_downloads=1).get_json()
    assert "Secret" not in client.get(path_of(limited["url"])).get_data(as_text=True)  # no preview: no free read
    assert client.get(f"/v1/shares/{limited['id']}").get_json()["downloads"] == 0


def test_a_shared_folders_images_have_thumbnails_that_spend_no_download(client):
    import io

    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(picture, "PNG")
    put(client, "b", "album/pic.png", picture.getvalue(), "image/png")
    put(client, "b", "album/notes.txt", b"text")
    made = share(client, bucket="b", prefix="album/", max_downloads=1).get_json()
    link = path_of(made["url"])
    assert 'data-testid="share-thumbnail"' in client.get(link).get_data(as_text=True)
    thumb = client.get(f"{link}/t/pic.png?size=128")
    assert thumb.status_code == 200 and thumb.mimetype == "image/webp"
    assert max(Image.open(io.BytesIO(thumb.data)).size) == 128
    assert client.get(f"{link}/t/notes.txt?size=128").status_code == 404
    assert client.get(f"{link}/t/notes.txt?size=128&fallback=1").status_code == 200  # an empty picture
    assert client.get(f"/v1/shares/{made['id']}").get_json()["downloads"] == 0
    one_file = path_of(share(client, bucket="b", key="album/pic.png").get_json()["url"])
    assert client.get(f"{one_file}/t/pic.png").status_code == 404
    request = path_of(share(client, bucket="b", prefix="album/", allow_upload=True).get_json()["url"])
    assert client.get(f"{request}/t/pic.png").status_code == 404  # a file request shows nothing


def test_an_upload_the_bucket_refuses_gives_its_bytes_back_to_the_link(client):
    made = share(client, bucket="b2", prefix="", allow_upload=True, upload_max_bytes=1000)
    assert made.status_code == 404  # no bucket yet
    client.put("/v1/files/b2")
    made = share(client, bucket="b2", prefix="", allow_upload=True, upload_max_bytes=1000).get_json()
    client.put("/v1/quotas/b2", data=json.dumps({"max_bytes": 500}))
    link = path_of(made["url"])
    assert tus_upload(client, link, "big.bin", b"x" * 600) == 507  # the bucket's quota
    assert client.get(f"/v1/shares/{made['id']}").get_json()["uploaded_bytes"] == 0
    assert tus_upload(client, link, "fits.bin", b"x" * 400) == 204
    assert client.get(f"/v1/shares/{made['id']}").get_json()["uploaded_bytes"] == 400


def test_a_revocation_wins_over_a_request_that_opened_the_link_just_before(client, services):
    """The request read the share (still active), then the revocation committed: counting the
    download or reserving the upload, in the same statement as its check, refuses it."""
    from files_app.errors import ShareGone

    put(client, "b", "f.txt", b"f")
    made = share(client, bucket="b", prefix="", allow_upload=True, listing=True).get_json()
    opened = services.shares.open(path_of(made["url"]).removeprefix("/s/"))
    client.delete(f"/v1/shares/{made['id']}")
    for attempt in (lambda: services.shares.count_download(opened),
                    lambda: services.shares.start_upload(opened, name="x.bin", size=1, mime_type=None,
                                                         tus_metadata=None, owner=f"share:{opened.id}")):
        with pytest.raises(ShareGone) as refused:
            attempt()
        assert refused.value.code == "share_revoked"
    state = client.get(f"/v1/shares/{made['id']}").get_json()
    assert (state["downloads"], state["uploaded_bytes"]) == (0, 0)


def test_a_files_link_dies_with_its_file_and_never_serves_a_later_one(client):
    """Replaced, deleted (then the same bytes uploaded again) or moved away: the link is 410, its
    page too; a folder's link serves what the folder holds now."""
    for key in ("replaced.txt", "deleted.txt", "moved.txt", "dir/x.txt"):
        put(client, "b", key, b"shared bytes")
    links = {key: path_of(share(client, bucket="b", key=key).get_json()["url"])
             for key in ("replaced.txt", "deleted.txt", "moved.txt")}
    folder = path_of(share(client, bucket="b", prefix="dir/").get_json()["url"])
    put(client, "b", "replaced.txt", b"another file, never shared")
    client.delete("/v1/files/b/deleted.txt")
    put(client, "b", "deleted.txt", b"shared bytes")
    client.post("/v1/move", data=json.dumps({"bucket": "b", "key": "moved.txt", "to_key": "away.txt"}))
    put(client, "b", "newcomer.txt", b"moved in later")
    client.post("/v1/move", data=json.dumps({"bucket": "b", "key": "newcomer.txt", "to_key": "moved.txt"}))
    assert client.get("/v1/content/b/moved.txt").data == b"moved in later"
    put(client, "b", "dir/x.txt", b"the folder's file now")
    for key, link in links.items():
        name = key.rpartition("/")[2]
        assert_error(client.get(f"{link}/f/{name}"), 410, "share_file_gone")
        assert_error(client.get(f"{link}/f/{name}", headers={"Range": "bytes=3-"}), 410, "share_file_gone")
        page = client.get(link, headers={"Accept": "text/html"})
        assert page.status_code == 410 and "<html" in page.get_data(as_text=True).lower()
    assert client.get(f"{folder}/f/x.txt").data == b"the folder's file now"


def test_a_links_download_is_counted_by_what_its_answer_carries(client):
    data = bytes(range(256)) * 400  # past FILES_INLINE_MAX: the blob store's ranged reads
    put(client, "b", "f.bin", data)
    for headers in ({"Range": f"bytes=-{len(data) + 1}"}, {"Range": "bytes=1-2,4-"}, {"Range": "items=1-"},
                    {"Range": "bytes=1-", "If-Range": '"another"'}):
        made = share(client, bucket="b", key="f.bin", max_downloads=1).get_json()
        link = path_of(made["url"])
        etag = client.head(f"{link}/f/f.bin").headers["ETag"]
        assert client.get(f"{link}/f/f.bin", headers={"If-None-Match": etag}).status_code == 304
        assert client.get(f"{link}/f/f.bin", headers={"Range": f"bytes={len(data)}-"}).status_code == 416
        assert client.get(f"{link}/f/f.bin", headers={"Range": "bytes=1-", "If-Range": etag}).status_code == 206
        assert client.get(f"/v1/shares/{made['id']}").get_json()["downloads"] == 0  # none of those
        whole = client.get(f"{link}/f/f.bin", headers=headers)
        assert whole.status_code in (200, 206) and whole.data == data, headers
        assert client.get(f"/v1/shares/{made['id']}").get_json()["downloads"] == 1
        assert_error(client.get(f"{link}/f/f.bin", headers=headers), 410, "share_exhausted")
    suffix = client.get("/v1/content/b/f.bin", headers={"Range": f"bytes=-{len(data) * 2}"})
    assert (suffix.status_code, suffix.data == data, suffix.headers["Content-Range"]) == (
        206, True, f"bytes 0-{len(data) - 1}/{len(data)}")
    put(client, "b", "empty.txt", b"")
    assert client.get("/v1/content/b/empty.txt", headers={"Range": "bytes=-5"}).status_code == 200
    assert client.get("/v1/content/b/empty.txt", headers={"Range": "bytes=0-"}).status_code == 416


def test_an_aborted_file_request_upload_gives_its_bytes_back_once(client):
    client.put("/v1/files/inbox")
    made = share(client, bucket="inbox", prefix="", allow_upload=True, upload_max_bytes=100).get_json()
    link = path_of(made["url"])
    created = client.post(f"{link}/uploads", headers={**TUS, "Upload-Length": "100",
                                                     "Upload-Metadata": "filename " + base64.b64encode(b"a").decode()})
    assert created.status_code == 201
    assert tus_upload(client, link, "b.bin", b"x") == 507  # the whole budget is promised
    session = path_of(created.headers["Location"])
    assert client.delete(session, headers=TUS).status_code == 204
    assert client.delete(session, headers=TUS).status_code == 404
    assert client.get(f"/v1/shares/{made['id']}").get_json()["uploaded_bytes"] == 0
    assert tus_upload(client, link, "c.bin", b"y" * 100) == 204
    assert client.get(f"/v1/shares/{made['id']}").get_json()["uploaded_bytes"] == 100  # a finished one stays


def test_a_file_request_upload_that_expires_unfinished_gives_its_bytes_back(client, services):
    client.put("/v1/files/inbox")
    made = share(client, bucket="inbox", prefix="", allow_upload=True, upload_max_bytes=100).get_json()
    link = path_of(made["url"])
    created = client.post(f"{link}/uploads", headers={**TUS, "Upload-Length": "100",
                                                     "Upload-Metadata": "filename " + base64.b64encode(b"a").decode()})
    client.patch(path_of(created.headers["Location"]), data=b"x" * 40, headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert tus_upload(client, link, "done.bin", b"y" * 1) == 507
    later = time.time() + 2 * 86400
    services.uploads.clock = lambda: later
    counts = services.collect_garbage(grace=0)
    assert (counts["refunded_file_request_uploads"], counts["expired_sessions"]) == (1, 0)
    assert client.get(f"/v1/shares/{made['id']}").get_json()["uploaded_bytes"] == 0
    services.uploads.clock = time.time
    assert tus_upload(client, link, "fits.bin", b"z" * 100) == 204
