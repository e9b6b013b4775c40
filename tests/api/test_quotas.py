"""Quotas per bucket (bytes, files) and per user or token (bytes), set through the API, enforced
when an upload is created (both dialects, a whole-file PUT, the OpenAI routes, a copy), with the
usage kept in step by every change, in both configurations."""

from __future__ import annotations

import json

from tests.helpers import assert_error, bearer, make_token, put

TUS = {"Tus-Resumable": "1.0.0"}


def set_quota(client, path: str, headers=None, **limits):
    return client.put(f"/v1/quotas/{path}", data=json.dumps(limits), headers=headers or {})


def create(client, bucket: str, key: str, size: int, headers=None):
    return client.post("/v1/files", data=json.dumps({"bucket": bucket, "key": key, "size": size}),
                       headers=headers or {})


def test_a_buckets_quota_refuses_at_creation_with_the_usage_and_the_limit(client):
    put(client, "b", "held.bin", b"x" * 600)
    quota = set_quota(client, "b", max_bytes=1000, max_files=3).get_json()
    assert quota == {"subject": "bucket", "name": "b", "max_bytes": 1000, "max_files": 3, "used_bytes": 600,
                     "used_files": 1, "promised_bytes": 0, "promised_files": 0, "kept_bytes": 0,
                     "kept_files": 0}
    open_upload = create(client, "b", "open.bin", 300)  # promised: counts before a byte arrives
    assert open_upload.status_code == 201
    refused = create(client, "b", "big.bin", 101)
    assert_error(refused, 507, "quota_exceeded")
    error = refused.get_json()["error"]
    assert (error["quota"], error["limit_bytes"], error["used_bytes"], error["requested_bytes"]) == (
        "bucket", 1000, 900, 101)
    assert_error(client.post("/v1/files", headers={**TUS, "Upload-Length": "101",
                                                   "Upload-Metadata": "bucket Yg==,key Yi5iaW4="}),
                 507, "quota_exceeded")  # tus speaks the same error
    assert_error(client.put("/v1/files/b/small.txt", data=b"y" * 101), 507, "quota_exceeded")
    assert create(client, "b", "fits.bin", 100).status_code == 201  # 600 + 300 + 100: just fits
    assert_error(create(client, "b", "fourth.bin", 0), 507, "quota_exceeded")  # a fourth file, though empty
    assert client.get("/v1/quotas/b").get_json()["promised_bytes"] == 400
    assert [e["key"] for e in client.get("/v1/files/b").get_json()["data"]] == ["held.bin"]
    bucket = client.get("/v1/files").get_json()["data"][0]
    assert bucket["quota"] == {"max_bytes": 1000, "max_files": 3} and bucket["bytes"] == 600


def test_finishing_deleting_and_aborting_keep_the_usage_in_step(client):
    set_quota(client, "b", max_bytes=1000)
    session = create(client, "b", "a.bin", 700).get_json()
    assert_error(create(client, "b", "b.bin", 301), 507, "quota_exceeded")
    client.delete(f"/v1/files/session:{session['id']}")  # an aborted upload frees its promise
    assert create(client, "b", "b.bin", 301).status_code == 201
    put(client, "b", "c.bin", b"c" * 500)
    usage = client.get("/v1/quotas/b").get_json()
    assert (usage["used_bytes"], usage["used_files"], usage["promised_bytes"]) == (500, 1, 301)
    client.delete("/v1/files/b/c.bin")
    assert client.get("/v1/quotas/b").get_json()["used_bytes"] == 0
    assert set_quota(client, "b", max_bytes=None, max_files=None).get_json()["max_bytes"] is None
    assert create(client, "b", "huge.bin", 10**9).status_code == 201  # no quota, no limit
    assert client.get("/v1/files").get_json()["data"][0]["quota"] is None


def test_a_quota_can_be_set_before_its_bucket_exists_and_counts_copies(client):
    set_quota(client, "later", max_files=1)
    put(client, "src", "a.txt", b"a")
    assert client.post("/v1/copy", data=json.dumps({"bucket": "src", "key": "a.txt", "to_bucket": "later",
                                                   "to_key": "a.txt"})).status_code == 200
    assert_error(client.post("/v1/copy", data=json.dumps({"bucket": "src", "key": "a.txt", "to_bucket": "later",
                                                         "to_key": "b.txt"})), 507, "quota_exceeded")
    assert client.get("/v1/quotas/later").get_json()["used_files"] == 1


def test_a_move_into_another_bucket_obeys_its_quota(client):
    put(client, "from", "a.bin", b"a" * 600)
    put(client, "from", "dir/b.bin", b"b" * 600)
    put(client, "to", "held.bin", b"h" * 300)
    set_quota(client, "to", max_bytes=1000)
    move = {"bucket": "from", "key": "a.bin", "to_bucket": "to", "to_key": "a.bin"}
    assert client.post("/v1/move", data=json.dumps(move)).status_code == 200  # 300 + 600 fits
    refused = client.post("/v1/move", data=json.dumps({"bucket": "from", "prefix": "dir/", "to_bucket": "to",
                                                       "to_prefix": "dir/"}))
    assert_error(refused, 507, "quota_exceeded")
    assert [e["key"] for e in client.get("/v1/files/from").get_json()["data"]] == ["dir/b.bin"]  # nothing lost
    set_quota(client, "from", max_bytes=1)  # a rename within a bucket adds nothing to it
    assert client.post("/v1/move", data=json.dumps({"bucket": "from", "key": "dir/b.bin",
                                                    "to_key": "c.bin"})).status_code == 200


def test_a_tokens_and_a_users_quota_span_their_buckets(app, client, runner):
    writer = bearer(make_token(runner, "write"))
    admin = bearer(make_token(runner, "admin"))
    token_id = _token_id(app, "write-test")
    assert_error(set_quota(client, f"tokens/{token_id}", writer, max_bytes=1000), 403, "forbidden")
    assert set_quota(client, f"tokens/{token_id}", admin, max_bytes=1000).status_code == 200
    assert_error(set_quota(client, f"tokens/{token_id}", admin, max_files=3), 400, "invalid_max_files")
    assert_error(set_quota(client, "tokens/999", admin, max_bytes=1), 404, "not_found")
    assert_error(set_quota(client, "users/nobody", admin, max_bytes=1), 404, "not_found")
    assert client.put("/v1/files/one/a.bin", data=b"a" * 600, headers=writer).status_code == 200
    assert_error(client.put("/v1/files/two/b.bin", data=b"b" * 401, headers=writer), 507, "quota_exceeded")
    assert client.put("/v1/files/two/b.bin", data=b"b" * 400, headers=writer).status_code == 200
    assert client.put("/v1/files/two/c.bin", data=b"c" * 1000, headers=admin).status_code == 200  # not its quota
    quota = client.get(f"/v1/quotas/tokens/{token_id}", headers=admin).get_json()
    assert (quota["subject"], quota["used_bytes"], quota["used_files"]) == ("token", 1000, 2)
    client.delete("/v1/files/one/a.bin", headers=admin)  # whoever deletes it, it was the writer's
    assert client.get(f"/v1/quotas/tokens/{token_id}", headers=admin).get_json()["used_bytes"] == 400
    runner.invoke(args=["files", "user", "create", "--name", "ann", "--password", "long enough"])
    assert set_quota(client, "users/ann", admin, max_bytes=5).get_json()["name"] == "ann"  # was the user's id
    assert client.get("/v1/quotas/users/ann", headers=admin).get_json()["name"] == "ann"


def test_bad_limits_and_who_may_read_or_set(client, runner):
    for bad in (-1, 1.5, "10", True, 2**63):
        assert_error(set_quota(client, "b", max_bytes=bad), 400, "invalid_max_bytes")
    assert_error(set_quota(client, "b" * 64, max_bytes=1), 400, "invalid_bucket")
    reader, mine = bearer(make_token(runner, "read")), bearer(make_token(runner, "admin", bucket="mine"))
    assert client.get("/v1/quotas/b", headers=reader).status_code == 200
    assert_error(set_quota(client, "b", reader, max_bytes=1), 403, "forbidden")
    assert_error(set_quota(client, "b", mine, max_bytes=1), 403, "forbidden")  # another bucket
    assert set_quota(client, "mine", mine, max_bytes=1).status_code == 200
    assert_error(client.get("/v1/quotas/users/ann", headers=mine), 403, "forbidden")


def test_the_openai_routes_obey_the_quotas(client):
    set_quota(client, "openai", max_bytes=100)
    files = client.post("/v1/openai/v1/files", data={"purpose": "assistants", "file": (__import__("io").BytesIO(
        b"z" * 200), "big.jsonl")}, content_type="multipart/form-data")
    assert files.status_code == 507 and files.get_json()["error"]["code"] == "quota_exceeded"
    upload = client.post("/v1/openai/v1/uploads", data=json.dumps({
        "filename": "big.jsonl", "purpose": "assistants", "bytes": 101, "mime_type": "text/plain"}),
        content_type="application/json")
    assert upload.status_code == 507
    assert client.get("/v1/quotas/openai").get_json()["used_bytes"] == 0


def _token_id(app, name: str) -> int:
    from sqlalchemy import select

    from files_app.models import ApiToken, db

    with app.app_context():
        return db.session.scalar(select(ApiToken.id).where(ApiToken.name == name))


def test_the_command_line_sets_and_lists_quotas(app, client, runner):
    result = runner.invoke(args=["files", "quota", "set", "bucket", "cli", "--max-bytes", "2K", "--max-files", "9"])
    assert result.exit_code == 0, result.output
    quota = client.get("/v1/quotas/cli").get_json()
    assert (quota["max_bytes"], quota["max_files"]) == (2048, 9)
    assert runner.invoke(args=["files", "quota", "set", "bucket", "cli", "--max-bytes", "lots"]).exit_code == 2
    made = runner.invoke(args=["files", "token", "create", "--name", "capped", "--scope", "write",
                               "--max-bytes", "1M"])
    assert made.exit_code == 0, made.output
    capped = bearer(made.output.strip().splitlines()[-1])
    assert_error(client.put("/v1/files/any/x.bin", data=b"x" * (1024 * 1024 + 1), headers=capped),
                 507, "quota_exceeded")
    assert runner.invoke(args=["files", "user", "create", "--name", "bo", "--password", "long enough",
                               "--max-bytes", "10G"]).exit_code == 0
    listed = runner.invoke(args=["files", "quota", "list"]).output
    assert "bucket:cli\tmax_bytes=2048\tmax_files=9" in listed
    assert f"token:{_token_id(app, 'capped')}\tmax_bytes=1048576" in listed
    assert "max_bytes=10737418240" in listed
    assert runner.invoke(args=["files", "quota", "set", "user", "nobody", "--max-bytes", "1"]).exit_code == 1
    assert runner.invoke(args=["files", "quota", "set", "bucket", "cli"]).exit_code == 0  # no limits: removed
    assert "bucket:cli" not in runner.invoke(args=["files", "quota", "list"]).output


def test_a_bucket_confined_admin_token_reads_and_sets_no_quota_through_the_form(client, runner):
    """#22: the page /quotas refuses a bucket-confined admin credential exactly as the API does (every
    quota is the whole service's business); its own bucket's quota it may set, there and in the API."""
    admin = make_token(runner, "admin")
    confined = bearer(make_token(runner, "admin", bucket="mine"))
    with client.session_transaction() as session:  # the form's CSRF token matches: only confinement refuses
        session["csrf"] = "form-token"
    assert client.put("/v1/files/mine/a.txt", data=b"a", headers=bearer(admin)).status_code == 200
    assert set_quota(client, "tokens/1", headers=bearer(admin), max_bytes=5000).status_code == 200

    assert_error(client.get("/v1/quotas/tokens/1", headers=confined), 403, "forbidden")
    assert_error(set_quota(client, "tokens/1", headers=confined, max_bytes=None), 403, "forbidden")
    page = client.get("/quotas", headers=confined)
    assert page.status_code == 403 and b"5000" not in page.data
    for kind, name in (("token", "1"), ("bucket", "other"), ("user", "nobody")):
        form = client.post("/quotas", data={"kind": kind, "name": name, "max_bytes": "", "max_files": "",
                                                "csrf_token": "form-token"},
                           headers=confined)
        assert form.status_code == 403, (kind, form.status_code)
    assert client.get("/v1/quotas/tokens/1", headers=bearer(admin)).get_json()["max_bytes"] == 5000
    assert client.get("/v1/quotas/other", headers=bearer(admin)).get_json()["max_bytes"] is None

    # Its own bucket's quota: the API and the bucket page's form alike; another bucket's: neither.
    assert set_quota(client, "mine", headers=confined, max_bytes=100).status_code == 200
    assert client.post("/b/mine/quota", data={"max_bytes": "200", "max_files": "", "csrf_token": "form-token"},
                       headers=confined).status_code == 302
    assert client.get("/v1/quotas/mine", headers=bearer(admin)).get_json()["max_bytes"] == 200
    assert_error(set_quota(client, "other", headers=confined, max_bytes=1), 403, "forbidden")
    assert client.post("/b/other/quota", data={"max_bytes": "1", "max_files": "", "csrf_token": "form-token"},
                       headers=confined).status_code == 403
