"""Every byte counted (issue #22): deferred-length tus sessions, completed tus partials and
file-request uploads count against their owner's quota (a file request's against its creator's),
and give their bytes back when aborted, joined or expired; two finals naming the same partial
cannot both take it; the session cap counts live sessions only. Both configurations."""

from __future__ import annotations

import base64
import json

from tests.api.test_quotas import _token_id, set_quota
from tests.api.test_shares import path_of, share, tus_upload
from tests.helpers import assert_error, bearer, make_token

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}
MIB = 1024 * 1024


def _meta(**fields: str) -> str:
    return ",".join(f"{name} {base64.b64encode(value.encode()).decode()}" for name, value in fields.items())


def _capped_token(app, client, runner, max_bytes: int) -> dict:
    writer = bearer(make_token(runner, "write"))
    admin = bearer(make_token(runner, "admin"))
    assert set_quota(client, f"tokens/{_token_id(app, 'write-test')}", admin, max_bytes=max_bytes).status_code == 200
    return writer


def _usage(app, client, runner) -> dict:
    admin = bearer(make_token(runner, "admin"))
    return client.get(f"/v1/quotas/tokens/{_token_id(app, 'write-test')}", headers=admin).get_json()


def _deferred(client, headers, **meta) -> str:
    made = client.post("/v1/files", headers={**TUS, **headers, "Upload-Defer-Length": "1",
                                             "Upload-Metadata": _meta(**meta)})
    assert made.status_code == 201, made.get_json()
    return path_of(made.headers["Location"])


def test_a_deferred_length_upload_counts_its_bytes_as_they_arrive(app, client, runner):
    writer = _capped_token(app, client, runner, 1 * MIB)
    url = _deferred(client, writer, bucket="d", key="big.bin")
    sent = client.patch(url, data=b"a" * (600 * 1024), headers={**PATCH, **writer, "Upload-Offset": "0"})
    assert sent.status_code == 204
    usage = _usage(app, client, runner)
    assert usage["promised_bytes"] == 600 * 1024  # its bytes, before its length is known
    # A second deferred session cannot store past the quota either: refused before its bytes are kept.
    other = _deferred(client, writer, bucket="d", key="other.bin")
    refused = client.patch(other, data=b"b" * (600 * 1024), headers={**PATCH, **writer, "Upload-Offset": "0"})
    assert_error(refused, 507, "quota_exceeded")
    assert client.head(other, headers={**TUS, **writer}).headers["Upload-Offset"] == "0"
    # Nor this one, past what it holds.
    more = client.patch(url, data=b"c" * (600 * 1024), headers={**PATCH, **writer, "Upload-Offset": str(600 * 1024)})
    assert_error(more, 507, "quota_exceeded")
    assert client.head(url, headers={**TUS, **writer}).headers["Upload-Offset"] == str(600 * 1024)
    # Aborted, its bytes are given back.
    assert client.delete(url, headers={**TUS, **writer}).status_code == 204
    assert _usage(app, client, runner)["promised_bytes"] == 0
    assert client.patch(other, data=b"b" * (600 * 1024),
                        headers={**PATCH, **writer, "Upload-Offset": "0"}).status_code == 204


def test_a_deferred_upload_that_expires_gives_its_bytes_back(app, client, runner, services):
    writer = _capped_token(app, client, runner, 1 * MIB)
    url = _deferred(client, writer, bucket="d", key="big.bin")
    assert client.patch(url, data=b"a" * (900 * 1024),
                        headers={**PATCH, **writer, "Upload-Offset": "0"}).status_code == 204
    subject = f"token:{_token_id(app, 'write-test')}"
    assert services.quotas.get(subject).usage.promised_bytes == 900 * 1024
    clock = services.quotas.clock
    services.quotas.clock = lambda: clock() + app.config["FILES_SESSION_TTL"] + 1
    try:
        assert services.quotas.get(subject).usage.promised_bytes == 0
    finally:
        services.quotas.clock = clock


def test_completed_tus_partials_count_until_joined(app, client, runner):
    writer = _capped_token(app, client, runner, 1 * MIB)
    partials = []
    for index in range(3):
        made = client.post("/v1/files", headers={**TUS, **writer, "Upload-Concat": "partial",
                                                 "Upload-Length": str(300 * 1024)})
        assert made.status_code == 201
        url = path_of(made.headers["Location"])
        assert client.patch(url, data=bytes([index]) * (300 * 1024),
                            headers={**PATCH, **writer, "Upload-Offset": "0"}).status_code == 204
        partials.append(url)
    assert _usage(app, client, runner)["promised_bytes"] == 900 * 1024  # complete, not yet joined
    made = client.post("/v1/files", headers={**TUS, **writer, "Upload-Concat": "partial",
                                             "Upload-Length": str(300 * 1024)})
    assert_error(made, 507, "quota_exceeded")  # a fourth would pass the quota
    final = client.post("/v1/files", headers={**TUS, **writer, "Upload-Concat": "final;" + " ".join(partials),
                                              "Upload-Metadata": _meta(bucket="j", key="joined.bin")})
    assert final.status_code == 201, final.get_json()  # the partials' bytes become the file's, not twice
    usage = _usage(app, client, runner)
    assert (usage["used_bytes"], usage["promised_bytes"]) == (900 * 1024, 0)


def test_a_final_naming_a_partial_another_final_took_gets_409_and_nothing_is_lost(client, services):
    made = client.post("/v1/files", headers={**TUS, "Upload-Concat": "partial", "Upload-Length": "5"})
    url = path_of(made.headers["Location"])
    assert client.patch(url, data=b"hello", headers={**PATCH, "Upload-Offset": "0"}).status_code == 204
    partial_id = url.rsplit("/", 1)[-1].removeprefix("session:")
    # Another final is between its checks and its join: it holds the partial (its lease names that
    # final's live session).
    from files_app.models import UploadSession, db, transaction

    holder = client.post("/v1/files", data=json.dumps({"bucket": "c", "key": "holder", "size": 10})).get_json()
    with transaction():
        db.session.execute(UploadSession.__table__.update().where(UploadSession.__table__.c.id == partial_id)
                           .values(lease_token=holder["id"]))
    second = client.post("/v1/files", headers={**TUS, "Upload-Concat": "final;" + url,
                                               "Upload-Metadata": _meta(bucket="c", key="second.txt")})
    assert_error(second, 409, "concat_in_progress")
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "5"  # the partial stays
    client.delete(f"/v1/files/session:{holder['id']}")  # that final gone: its hold is stale
    first = client.post("/v1/files", headers={**TUS, "Upload-Concat": "final;" + url,
                                              "Upload-Metadata": _meta(bucket="c", key="first.txt")})
    assert first.status_code == 201
    assert client.get("/v1/content/c/first.txt").data == b"hello"
    late = client.post("/v1/files", headers={**TUS, "Upload-Concat": "final;" + url,
                                             "Upload-Metadata": _meta(bucket="c", key="late.txt")})
    assert late.status_code in (400, 404, 409) and late.status_code != 500
    assert [e["key"] for e in client.get("/v1/files/c").get_json()["data"]] == ["first.txt"]


def test_a_file_request_counts_against_its_creators_quota(app, client, runner):
    writer = _capped_token(app, client, runner, 1 * MIB)
    client.put("/v1/files/inbox", headers=writer)
    made = share(client, writer, bucket="inbox", prefix="", allow_upload=True).get_json()
    link = path_of(made["url"])
    statuses = [tus_upload(client, link, f"f{index}.bin", b"x" * 600_000) for index in range(4)]
    assert statuses == [204, 507, 507, 507]
    usage = _usage(app, client, runner)
    assert usage["used_bytes"] == 600_000
    entries = client.get("/v1/files/inbox", headers=writer).get_json()["data"]
    assert len(entries) == 1 and entries[0].get("uploaded_by", "a file request").startswith("a file request")


def test_expired_sessions_do_not_count_toward_the_session_cap(app, client, runner, services):
    writer = bearer(make_token(runner, "write"))
    services.uploads.max_sessions = 2
    for index in range(2):
        assert client.post("/v1/files", data=json.dumps({"bucket": "s", "key": f"k{index}", "size": 10}),
                           headers=writer).status_code == 201
    assert_error(client.post("/v1/files", data=json.dumps({"bucket": "s", "key": "k2", "size": 10}),
                             headers=writer), 429, "too_many_sessions")
    clock = services.uploads.clock
    services.uploads.clock = lambda: clock() + app.config["FILES_SESSION_TTL"] + 5
    try:  # both expired: the cap counts live sessions only, gc or not
        assert client.post("/v1/files", data=json.dumps({"bucket": "s", "key": "k3", "size": 10}),
                           headers=writer).status_code == 201
    finally:
        services.uploads.clock = clock
