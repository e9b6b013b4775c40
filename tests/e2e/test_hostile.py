"""A corpus of hostile requests against the real server, in both configurations. Each gets its 4xx
in the one error shape (where the app answers; gunicorn itself refuses some malformed HTTP), and
afterwards the blob store and the database hold exactly what they held before."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest
from sqlalchemy import text

from files_app import create_app
from files_app.models import db
from files_app.storage import LocalBlobStore
from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e
TUS = "Tus-Resumable: 1.0.0\r\n"


def raw(server, request: bytes) -> tuple[int, bytes, str]:
    """Send bytes as they are; return (status, body, content type)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), body, headers.get("content-type", "")


def http(method: str, path: str, headers: str = "", body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PATCH", "PUT") else ""
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}{length}\r\n".encode() + body


def create(fields: dict) -> bytes:
    return http("POST", "/v1/files", body=json.dumps(fields).encode())


def fields(**changes) -> dict:
    return {"bucket": "hostile", "key": "k.bin", "size": 10, **changes}


SESSION = "{session}"  # filled in with a real session of the test
CASES = [
    # --- names: traversal, absolute paths, NUL, control characters, look-alikes, length ----------
    ("key ../", create(fields(key="../etc/passwd")), {400}),
    ("key a/../../b", create(fields(key="a/../../b")), {400}),
    ("key ./a", create(fields(key="./a")), {400}),
    ("key absolute", create(fields(key="/etc/passwd")), {400}),
    ("key NUL", create(fields(key="a\u0000b")), {400}),
    ("key newline", create(fields(key="a\nb")), {400}),
    ("key DEL", create(fields(key="a\u007fb")), {400}),
    ("key empty segment", create(fields(key="a//b")), {400}),
    ("key trailing slash", create(fields(key="dir/")), {400}),
    ("key 1025 bytes", create(fields(key="x" * 1025)), {400}),
    ("key lone surrogate", b'POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n'
                           b'Content-Length: 48\r\n\r\n{"bucket":"hostile","key":"\\ud800x","size":10}  ', {400}),
    ("key not a string", create(fields(key=["a"])), {400}),
    ("bucket ../", create(fields(bucket="../b")), {400}),
    ("bucket slash", create(fields(bucket="a/b")), {400}),
    ("bucket backslash", create(fields(bucket="a\\b")), {400}),
    ("bucket dot", create(fields(bucket=".")), {400}),
    ("bucket empty", create(fields(bucket="")), {400}),
    ("bucket 64 chars", create(fields(bucket="b" * 64)), {400}),
    ("bucket cyrillic look-alike", create(fields(bucket="buck\u0435t")), {400}),
    ("bucket fullwidth", create(fields(bucket="\uff42ucket")), {400}),
    ("url %2e%2e key", http("GET", "/v1/files/hostile/%2e%2e/%2e%2e/etc/passwd"), {400, 404}),
    ("url %2e%2e content", http("GET", "/v1/content/hostile/%2e%2e%2f%2e%2e%2fetc%2fpasswd"), {400, 404}),
    ("url ../ bucket", http("GET", "/v1/files/../etc"), {400, 404}),
    ("url double slash", http("GET", "/v1/files/hostile//etc/passwd"), {404}),
    ("url NUL", http("GET", "/v1/files/hostile/a%00b"), {400}),
    ("url backslash traversal", http("GET", "/v1/content/hostile/..%5c..%5cwindows"), {404}),
    ("url overlong key", http("GET", "/v1/files/hostile/" + "k" * 2000), {400}),
    # --- sizes -----------------------------------------------------------------------------------
    ("size negative", create(fields(size=-1)), {400}),
    ("size string", create(fields(size="10")), {400}),
    ("size float", create(fields(size=1.5)), {400}),
    ("size huge float", create(fields(size=1e30)), {400}),
    ("size 2^63", create(fields(size=2**63)), {413}),
    ("size bool", create(fields(size=True)), {400}),
    ("size null", create(fields(size=None)), {400}),
    ("size object", create(fields(size={})), {400}),
    ("size missing", create({"bucket": "hostile", "key": "k"}), {400}),
    # --- JSON ------------------------------------------------------------------------------------
    ("json truncated", http("POST", "/v1/files", body=b'{"bucket": "hostile"'), {400}),
    ("json array", http("POST", "/v1/files", body=b"[]"), {400}),
    ("json null", http("POST", "/v1/files", body=b"null"), {400}),
    ("json nested deep", http("POST", "/v1/files", body=b"[" * 50000), {400}),
    ("json huge", http("POST", "/v1/files", body=b'{"a": "' + b"x" * 200_000 + b'"}'), {400}),
    ("json not utf-8", http("POST", "/v1/files", body=b'{"bucket": "\xff\xfe"}'), {400}),
    ("json mime header injection", create(fields(mime_type="text/html\r\nSet-Cookie: a=b")), {400}),
    ("json sha256 short", create(fields(sha256="abc")), {400}),
    ("if-none-match etag", http("POST", "/v1/files", 'If-None-Match: "x"\r\n', json.dumps(fields()).encode()), {400}),
    # --- offsets and bodies on a live session ------------------------------------------------
    ("offset past the end", http("POST", f"/v1/files/session:{SESSION}", "Upload-Offset: 999999\r\n", b"x"), {409}),
    ("offset negative", http("POST", f"/v1/files/session:{SESSION}", "Upload-Offset: -1\r\n", b"x"), {400}),
    ("offset not a number", http("POST", f"/v1/files/session:{SESSION}", "Upload-Offset: 1e3\r\n", b"x"), {400}),
    ("offset 30 digits", http("POST", f"/v1/files/session:{SESSION}", "Upload-Offset: " + "9" * 30 + "\r\n", b"x"),
     {400}),
    ("offset twice", http("POST", f"/v1/files/session:{SESSION}", "Upload-Offset: 3\r\nUpload-Offset: 4\r\n", b"x"),
     {400, 409}),
    ("body longer than the size", http("POST", f"/v1/files/session:{SESSION}", "", b"y" * 100), {413}),
    ("chunked body past the size",
     f"POST /v1/files/session:{SESSION} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked"
     "\r\n\r\n40\r\n".encode() + b"z" * 64 + b"\r\n0\r\n\r\n", {413}),
    ("checksum mismatch", http("POST", f"/v1/files/session:{SESSION}",
                               "Upload-Checksum: sha1 " + "A" * 27 + "=\r\n", b"abc"), {460}),
    ("checksum unknown algorithm", http("POST", f"/v1/files/session:{SESSION}", "Upload-Checksum: crc32 AAAA\r\n",
                                        b"abc"), {400}),
    ("checksum not base64", http("POST", f"/v1/files/session:{SESSION}", "Upload-Checksum: sha256 !!!\r\n", b"abc"),
     {400}),
    ("tus PATCH wrong type", http("PATCH", f"/v1/files/session:{SESSION}", TUS + "Upload-Offset: 4\r\n"
                                  "Content-Type: text/plain\r\n", b"abc"), {415}),
    ("tus PATCH no offset", http("PATCH", f"/v1/files/session:{SESSION}", TUS +
                                 "Content-Type: application/offset+octet-stream\r\n", b"abc"), {400}),
    ("tus wrong version", http("PATCH", f"/v1/files/session:{SESSION}", "Tus-Resumable: 0.1\r\nUpload-Offset: 4\r\n"
                               "Content-Type: application/offset+octet-stream\r\n", b"abc"), {412}),
    ("tus length changed", http("PATCH", f"/v1/files/session:{SESSION}", TUS + "Upload-Offset: 4\r\nUpload-Length: 99"
                                "\r\nContent-Type: application/offset+octet-stream\r\n", b"abc"), {400}),
    ("tus metadata not base64", http("POST", "/v1/files", TUS + "Upload-Length: 5\r\nUpload-Metadata: key !!!\r\n"),
     {400}),
    ("tus concat foreign url", http("POST", "/v1/files", TUS + "Upload-Concat: final;http://evil/x/y\r\n"), {400}),
    ("tus defer length 2", http("POST", "/v1/files", TUS + "Upload-Defer-Length: 2\r\n"), {400}),
    # --- sessions that are not yours or not there, methods that are not there ------------------------
    ("unknown session", http("POST", "/v1/files/session:" + "0" * 32, "", b"x"), {404}),
    ("session not hex", http("GET", "/v1/files/session:../../x"), {400, 404}),
    ("session empty", http("GET", "/v1/files/session:"), {400, 404}),  # "session:" is no bucket name
    ("PUT creation", http("PUT", "/v1/files", body=b"{}"), {405}),
    ("PATCH a bucket", http("PATCH", "/v1/files/hostile", body=b"x"), {404}),  # tus: not an upload URL
    ("POST content", http("POST", "/v1/content/hostile/k", body=b"x"), {405}),
    ("DELETE openapi", http("DELETE", "/v1/openapi.json"), {405}),
    ("DELETE content", http("DELETE", "/v1/content/hostile/kept.txt"), {405}),
    ("listing limit text", http("GET", "/v1/files/hostile?limit=abc"), {400}),
    ("listing limit huge", http("GET", "/v1/files/hostile?limit=1000000"), {400}),
    ("listing cursor garbage", http("GET", "/v1/files/hostile?cursor=%%%"), {400}),
    ("listing delimiter control", http("GET", "/v1/files/hostile?delimiter=%0a"), {400}),
    ("delete a non-empty bucket", http("DELETE", "/v1/files/hostile"), {409}),
    # --- where it comes from: rebinding Host names, other sites' pages (curl sends neither) -------
    ("Host rebinding name", http("GET", "/v1/files").replace(b"Host: 127.0.0.1", b"Host: rebind.example"), {400}),
    ("Host missing", http("GET", "/v1/files").replace(b"Host: 127.0.0.1\r\n", b""), {400}),
    ("delete from another site", http("DELETE", "/v1/files/hostile/kept.txt", "Origin: http://evil.example\r\n"),
     {403}),
    ("text/plain creation from another site", http("POST", "/v1/files", "Origin: http://evil.example\r\n"
     "Content-Type: text/plain\r\n", json.dumps(fields(key="kept.txt", size=0)).encode()), {403}),
    ("form delete from another site", http("POST", "/b/hostile/delete", "Sec-Fetch-Site: cross-site\r\n"
     "Content-Type: application/x-www-form-urlencoded\r\n", b"key=kept.txt"), {403}),
    ("form delete without a token", http("POST", "/b/hostile/delete", "Content-Type: application/x-www-form-urlencoded"
     "\r\n", b"key=kept.txt&csrf_token="), {403}),
    ("mime type with a non-ASCII parameter", create(fields(mime_type='image/png; a="\u0100"')), {400}),
    ("key with a bidi override", create(fields(key="txt.\u202eexe")), {400}),
    ("key with a C1 control", create(fields(key="a\u0085b")), {400}),
]


def snapshot(settings: dict) -> dict:
    """Every row, and every stored thing with a digest of its bytes (files, or S3 keys and ETags)."""
    app = create_app(settings)
    with app.app_context():
        rows = {table: sorted(map(tuple, db.session.execute(text(f"SELECT * FROM {table}")).all()))  # noqa: S608
                for table in ("buckets", "objects", "upload_sessions")}
        store = app.extensions["files"].store
        if isinstance(store, LocalBlobStore):
            files = {str(p.relative_to(store.root)): hashlib.sha256(p.read_bytes()).hexdigest()
                     for p in sorted(store.root.rglob("*")) if p.is_file() and not p.name.startswith("files.db")}
        else:
            pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
            files = {entry["Key"]: entry["ETag"] for page in pages for entry in page.get("Contents", ())}
            files["uploads"] = sorted(u["UploadId"] for u in store.client.list_multipart_uploads(
                Bucket=store.bucket).get("Uploads", ()))
        db.session.remove()
        db.engine.dispose()
    return {"files": files, "rows": rows}


def test_hostile_corpus(any_server, deployment):
    server, api = any_server, Api(any_server.url)
    settings = {"FILES_DATA_DIR": str(server.data_dir), "FILES_DATABASE_URL": "", **deployment}
    api.put("hostile", "kept.txt", b"must survive")
    session = api.call("POST", "/v1/files", json.dumps({"bucket": "hostile", "key": "in-progress", "size": 10})
                       .encode())
    api.call("POST", session["url"].removeprefix(server.url), b"1234")
    before = snapshot(settings)
    assert len(CASES) >= 60
    failures = []
    for name, request, expected in CASES:
        status, body, kind = raw(server, request.replace(SESSION.encode(), session["id"].encode()))
        if status not in expected:
            failures.append(f"{name}: {status} {body[:160]!r}")
        elif kind.startswith("application/json"):
            error = json.loads(body)["error"]
            if error["status"] != status or not error["code"] or not error["message"]:
                failures.append(f"{name}: malformed error {body[:160]!r}")
        elif not (kind.startswith("text/html") and request.split(b" ")[1].startswith(b"/b/")):
            failures.append(f"{name}: {status} not in the JSON error shape: {body[:160]!r}")  # pages answer pages
    assert failures == [], "\n".join(failures)
    assert snapshot(settings) == before
    assert api.file("hostile", "kept.txt")["sha256"] == hashlib.sha256(b"must survive").hexdigest()
    assert api.call("GET", session["url"].removeprefix(server.url))["offset"] == 4
