"""The OpenAI-compatible API driven by the real `openai` SDK, against a real gunicorn server in both
configurations ({SQLite, local disk} and {PostgreSQL, SeaweedFS}), with a write token as its api_key."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.helpers import curl, flask_files_ok

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


def create_token(server, scope: str, bucket: str | None = None) -> str:
    """`flask files token create` against the server's own database."""
    args = ["token", "create", "--name", f"sdk-{scope}", "--scope", scope] + (["--bucket", bucket] if bucket else [])
    return flask_files_ok(server, *args)


def sdk(server, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1/openai/v1", api_key=token, max_retries=0, timeout=120)


@pytest.fixture
def server(any_server):
    return any_server


@pytest.fixture
def token(server):
    return create_token(server, "write")


@pytest.fixture
def client(server, token):
    return sdk(server, token)


def seed_api(server, token: str, path: str) -> tuple[int, dict]:
    return curl("-H", f"Authorization: Bearer {token}", f"{server.url}{path}")


def test_files_from_bytes_a_path_and_a_file_object(client, server, token, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(on_disk := os.urandom(3 * MIB + 17))
    made = [
        (client.files.create(file=("notes.txt", b"hello, files"), purpose="assistants"), b"hello, files"),
        (client.files.create(file=path, purpose="fine-tune"), on_disk),
        (client.files.create(file=io.BytesIO(b"{}\n" * 1000), purpose="batch"), b"{}\n" * 1000),
    ]
    for file, content in made:
        assert file.object == "file" and file.id.startswith("file-") and file.status == "processed"
        assert file.bytes == len(content) and abs(file.created_at - time.time()) < 60 and file.expires_at is None
        assert client.files.retrieve(file.id) == file
        assert client.files.content(file.id).content == content
    assert [f.filename for f, _ in made] == ["notes.txt", "train.jsonl", "upload"]

    # The same file through the seed's routes: an object in the `openai` bucket, same sha256.
    file, content = made[1]
    status, listing = seed_api(server, token, "/v1/files/openai")
    assert status == 200
    [stored] = [entry for entry in listing["data"] if entry["key"].startswith(file.id + "/")]
    assert stored["key"] == f"{file.id}/train.jsonl" and stored["bytes"] == len(content)
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()
    assert seed_api(server, token, f"/v1/files/openai/{file.id}/train.jsonl") == (
        200, {**stored, "uploaded_by": "token sdk-write"})  # who made it, in one file's metadata

    deleted = client.files.delete(file.id)
    assert (deleted.id, deleted.deleted) == (file.id, True)
    with pytest.raises(openai.NotFoundError) as missing:
        client.files.retrieve(file.id)
    assert missing.value.status_code == 404 and file.id in missing.value.message
    assert missing.value.body["type"] == "invalid_request_error" and missing.value.body["code"] == "not_found"
    with pytest.raises(openai.NotFoundError):
        client.files.content(file.id)
    assert seed_api(server, token, f"/v1/files/openai/{file.id}/train.jsonl")[0] == 404


def test_content_is_a_download_with_ranges_and_etags(client, server, token):
    file = client.files.create(file=("page.html", b"<script>alert(1)</script>" * 100), purpose="user_data")
    request = urllib.request.Request(f"{server.url}/v1/openai/v1/files/{file.id}/content",
                                     headers={"Authorization": f"Bearer {token}", "Range": "bytes=8-15"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 206 and response.read() == b"alert(1)"
        headers = response.headers
    assert headers["Content-Disposition"].startswith("attachment;") and 'filename="page.html"' in \
        headers["Content-Disposition"]
    assert headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in headers["Content-Security-Policy"]
    request = urllib.request.Request(request.full_url, headers={"Authorization": f"Bearer {token}",
                                                                "If-None-Match": headers["ETag"]})
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(request, timeout=30)
    assert not_modified.value.code == 304


def test_listing_pages_orders_and_filters(client):
    made = [client.files.create(file=(f"f{i}.txt", b"x" * i), purpose=PURPOSES[i % 2]) for i in range(7)]
    ids = [file.id for file in made]
    page = client.files.list(limit=3)
    assert [f.id for f in page.data] == ids[::-1][:3] and page.has_more
    # The SDK's auto-paging follows after=<last id> until has_more is false.
    assert [f.id for f in client.files.list(limit=3)] == ids[::-1]
    assert [f.id for f in client.files.list(limit=2, order="asc")] == ids
    assert [f.id for f in client.files.list(purpose="batch")] == [f.id for f in made[::-1] if f.purpose == "batch"]
    # A page goes on from where it was even if the file it ended at has been deleted meanwhile.
    first = client.files.list(limit=2)
    client.files.delete(first.data[-1].id)
    rest = client.files.list(limit=100, after=first.data[-1].id)
    assert [f.id for f in rest.data] == ids[::-1][2:] and not rest.has_more
    raw = client.files.with_raw_response.list(limit=1).http_response.json()
    assert set(raw) == {"object", "data", "first_id", "last_id", "has_more"} and raw["first_id"] == raw["last_id"]


def test_every_purpose_and_a_wrong_one(client):
    for purpose in PURPOSES:
        assert client.files.create(file=("p.txt", purpose.encode()), purpose=purpose).purpose == purpose
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("p.txt", b"x"), purpose="weights")
    assert refused.value.body["param"] == "purpose" and "purpose must be one of" in refused.value.message
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert len(client.files.list().data) == len(PURPOSES)  # nothing kept of the refused one


def test_expires_after_sets_the_expiry(client):
    file = client.files.create(file=("soon.txt", b"soon"), purpose="batch",
                               expires_after={"anchor": "created_at", "seconds": 3600})
    assert file.expires_at == file.created_at + 3600
    assert client.files.retrieve(file.id).expires_at == file.expires_at
    for seconds in (3599, 2592001):
        with pytest.raises(openai.BadRequestError) as refused:
            client.files.create(file=("x.txt", b"x"), purpose="batch",
                                expires_after={"anchor": "created_at", "seconds": seconds})
        assert refused.value.body["param"] == "expires_after[seconds]"


def test_upload_file_chunked_in_several_parts(client, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(content := os.urandom(5 * MIB + 3))
    upload = client.uploads.upload_file_chunked(file=path, mime_type="application/octet-stream", purpose="assistants",
                                                part_size=MIB, md5=hashlib.md5(content).hexdigest())
    assert upload.status == "completed" and upload.bytes == len(content) and upload.filename == "big.bin"
    assert upload.file.bytes == len(content) and upload.file.purpose == "assistants"
    assert client.files.content(upload.file.id).content == content


def test_parts_sent_in_parallel_and_completed_in_another_order(client):
    pieces = [os.urandom(MIB + i) for i in range(4)]
    content = b"".join(pieces)
    upload = client.uploads.create(bytes=len(content), filename="joined.bin", mime_type="application/octet-stream",
                                   purpose="batch", expires_after={"anchor": "created_at", "seconds": 7200})
    assert upload.status == "pending" and upload.expires_at == upload.created_at + 3600 and upload.file is None
    with ThreadPoolExecutor(4) as pool:  # sent last first, all at once
        parts = list(pool.map(lambda piece: client.uploads.parts.create(upload.id, data=piece), pieces[::-1]))[::-1]
    assert all(part.object == "upload.part" and part.upload_id == upload.id for part in parts)
    with pytest.raises(openai.APIStatusError) as past:  # the parts hold the Upload's bytes: no more (before: 200)
        client.uploads.parts.create(upload.id, data=b"not listed")
    assert past.value.status_code == 413 and past.value.body["code"] == "too_large"

    with pytest.raises(openai.BadRequestError) as wrong_md5:
        client.uploads.complete(upload.id, part_ids=[p.id for p in parts], md5="0" * 32)
    assert wrong_md5.value.body["code"] == "md5_mismatch"
    with pytest.raises(openai.BadRequestError) as short:
        client.uploads.complete(upload.id, part_ids=[p.id for p in parts[:3]])
    assert short.value.body["code"] == "bytes_mismatch"

    done = client.uploads.complete(upload.id, part_ids=[p.id for p in parts], md5=hashlib.md5(content).hexdigest())
    assert done.status == "completed" and done.file.bytes == len(content)
    assert done.file.expires_at == done.file.created_at + 7200
    assert client.files.content(done.file.id).content == content
    # A retry of the completion (its answer lost) gets the same answer.
    assert client.uploads.complete(upload.id, part_ids=[p.id for p in parts]).file.id == done.file.id
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload.id, part_ids=[parts[0].id])  # completed with other parts
    with pytest.raises(openai.BadRequestError) as late:
        client.uploads.parts.create(upload.id, data=b"late")
    assert late.value.body["code"] == "upload_completed"


def test_cancel(client):
    upload = client.uploads.create(bytes=10, filename="c.bin", mime_type="text/plain", purpose="user_data")
    part = client.uploads.parts.create(upload.id, data=b"0123456789")
    cancelled = client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled" and cancelled.file is None
    assert client.uploads.cancel(upload.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError) as refused:
        client.uploads.complete(upload.id, part_ids=[part.id])
    assert refused.value.body["code"] == "upload_cancelled"
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload.id, data=b"more")
    assert client.files.list().data == []


def test_errors_have_the_sdks_classes(client, server, token):
    with pytest.raises(openai.AuthenticationError) as unknown_key:
        sdk(server, "not-a-token").files.list()
    assert unknown_key.value.status_code == 401 and unknown_key.value.body["type"] == "authentication_error"
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-" + "0" * 32)
    with pytest.raises(openai.NotFoundError):
        client.uploads.parts.create("upload_" + "0" * 32, data=b"x")
    with pytest.raises(openai.BadRequestError) as too_big:
        client.uploads.create(bytes=-1, filename="x", mime_type="text/plain", purpose="batch")
    assert too_big.value.body["param"] == "bytes"
    # A route that does not exist answers in OpenAI's shape too.
    status, body = curl("-H", f"Authorization: Bearer {token}", f"{server.url}/v1/openai/v1/models")
    assert status == 404 and set(body["error"]) == {"message", "type", "param", "code"}


def test_scopes_and_confined_tokens(client, server):
    file = client.files.create(file=("r.txt", b"read me"), purpose="assistants")
    reader = sdk(server, create_token(server, "read"))
    assert reader.files.retrieve(file.id).id == file.id and reader.files.content(file.id).content == b"read me"
    with pytest.raises(openai.PermissionDeniedError):
        reader.files.create(file=("w.txt", b"no"), purpose="assistants")
    with pytest.raises(openai.PermissionDeniedError):
        reader.files.delete(file.id)
    elsewhere = sdk(server, create_token(server, "write", bucket="photos"))
    with pytest.raises(openai.PermissionDeniedError) as confined:
        elsewhere.files.list()
    assert confined.value.body["type"] == "permission_error"


def test_curl_with_the_purpose_after_the_file(server, token, tmp_path):
    """curl -F sends fields in the order written: a purpose after the file is read after its bytes
    (which stream to storage first); a wrong one then leaves nothing behind."""
    path = tmp_path / "late.txt"
    path.write_bytes(b"late purpose" * 1000)
    auth = ("-H", f"Authorization: Bearer {token}")
    status, file = curl(*auth, "-F", f"file=@{path}", "-F", "purpose=evals", f"{server.url}/v1/openai/v1/files")
    assert status == 200 and (file["purpose"], file["bytes"], file["filename"]) == ("evals", 12000, "late.txt")
    status, error = curl(*auth, "-F", f"file=@{path}", "-F", "purpose=nope", f"{server.url}/v1/openai/v1/files")
    assert status == 400 and error["error"]["param"] == "purpose"
    status, error = curl(*auth, "-F", "purpose=batch", f"{server.url}/v1/openai/v1/files")
    assert status == 400 and error["error"]["param"] == "file"
    status, listing = seed_api(server, token, "/v1/files/openai")
    assert [entry["key"] for entry in listing["data"]] == [f"{file['id']}/late.txt"]


def test_a_part_above_64_mib_is_refused_and_nothing_is_kept(client, server, token):
    upload = client.uploads.create(bytes=64 * MIB + 1, filename="big", mime_type="text/plain", purpose="batch")
    with pytest.raises(openai.APIStatusError) as refused:
        client.uploads.parts.create(upload.id, data=b"x" * (64 * MIB + 1))
    assert refused.value.status_code == 413
    part = client.uploads.parts.create(upload.id, data=b"x" * MIB)  # the upload goes on
    assert part.upload_id == upload.id


def test_another_sites_page_cannot_create_or_delete(server):
    """An open service (no token exists): a request from another site's page (no bearer token, a
    foreign Origin) changes nothing."""
    client = sdk(server, "any key: the service is open")
    file = client.files.create(file=("keep.txt", b"keep"), purpose="assistants")
    for method, path, body, content_type in (
            ("POST", "/v1/openai/v1/files", b"--x\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
                                            b"batch\r\n--x--\r\n", "multipart/form-data; boundary=x"),
            ("DELETE", f"/v1/openai/v1/files/{file.id}", None, None),
            ("POST", "/v1/openai/v1/uploads", json.dumps({"filename": "a", "purpose": "batch", "bytes": 1,
                                                          "mime_type": "text/plain"}).encode(), "text/plain")):
        headers = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403
        assert set(json.loads(refused.value.read())["error"]) == {"message", "type", "param", "code"}
    assert client.files.retrieve(file.id).id == file.id


def test_an_openai_file_shows_in_the_file_browser(page, server):
    """An OpenAI file is an object like any other: its folder (its id) and its name in the browser,
    and the file page downloads the same bytes."""
    from playwright.sync_api import expect

    file = sdk(server, "open").files.create(file=("report.csv", b"a,b\n1,2\n"), purpose="assistants")
    page.goto(f"{server.url}/b/openai/")
    page.click(f"[data-testid=folder-row][data-prefix='{file.id}/'] a")
    row = page.locator(f"[data-testid=object-row][data-key='{file.id}/report.csv']")
    expect(row).to_contain_text("report.csv")
    expect(row).to_contain_text("8 B")
    row.locator("td a").first.click()  # its name
    expect(page.locator("h1")).to_contain_text("report.csv")
    with page.expect_download() as download:
        page.click("[data-testid=download]")
    assert Path(download.value.path()).read_bytes() == b"a,b\n1,2\n"
