"""People, roles, grants, personal tokens and the audit log, through the API (both configurations)."""

from __future__ import annotations

import json

from tests.helpers import assert_error, bearer, make_token

PASSWORD = "correct horse battery"


def json_body(value) -> dict:
    return {"data": json.dumps(value), "content_type": "application/json"}


def csrf_of(page) -> str:
    return page.data.split(b'name="csrf-token" content="')[1].split(b'"')[0].decode()


def signed_in(app, name: str, password: str = PASSWORD):
    """A browser signed in as `name`: its client and the page's CSRF token."""
    browser = app.test_client()
    csrf = csrf_of(browser.get("/login"))
    answer = browser.post("/login", data={"username": name, "password": password, "csrf_token": csrf})
    assert answer.status_code == 302, answer.data
    return browser, csrf_of(browser.get("/"))


def person(app, client, admin: str, name: str, role: str = "member", scope: str = "manage") -> dict:
    """A person made by the admin, and a token of theirs (made by them, signed in)."""
    made = client.post("/v1/users", headers=bearer(admin), **json_body({"name": name, "password": PASSWORD,
                                                                          "role": role}))
    assert made.status_code == 201, made.data
    browser, csrf = signed_in(app, name)
    token = browser.post("/v1/tokens", headers={"X-CSRF-Token": csrf}, **json_body({"name": "laptop", "scope": scope}))
    assert token.status_code == 201, token.data
    return bearer(token.get_json()["token"])


def upload(client, headers, bucket: str, key: str, data: bytes = b"data"):
    return client.put(f"/v1/files/{bucket}/{key}", data=data, headers=headers)


def test_members_see_only_their_buckets_and_what_they_are_granted(app, client, runner):
    admin = make_token(runner, "admin")
    ann, bob = person(app, client, admin, "ann"), person(app, client, admin, "bob")
    assert upload(client, ann, "ann-docs", "plan.txt").status_code == 200  # a new bucket: ann's
    assert upload(client, bearer(admin), "ops", "log.txt").status_code == 200
    names = lambda headers: [b["name"] for b in client.get("/v1/files", headers=headers).get_json()["data"]]  # noqa: E731
    assert names(ann) == ["ann-docs"] and names(bob) == []
    assert names(bearer(admin)) == ["ann-docs", "ops"]
    # Another member's bucket does not exist for bob, whatever the route.
    for path in ("/v1/files/ann-docs", "/v1/files/ann-docs/plan.txt", "/v1/content/ann-docs/plan.txt",
                 "/v1/files/ann-docs?q=plan", "/v1/zip/ann-docs", "/v1/folders/ann-docs/x/", "/v1/quotas/ann-docs",
                 "/v1/thumbnails/ann-docs/plan.txt", "/v1/grants/ann-docs"):
        assert_error(client.get(path, headers=bob), 404, "not_found")
    assert_error(upload(client, bob, "ann-docs", "mine.txt"), 404, "not_found")
    assert_error(client.delete("/v1/files/ann-docs/plan.txt", headers=bob), 404, "not_found")
    assert_error(client.post("/v1/files", headers=bob, **json_body({"bucket": "ann-docs", "key": "k", "size": 1})),
                 404, "not_found")
    assert_error(client.post("/v1/copy", headers=bob, **json_body({"bucket": "ann-docs", "key": "plan.txt",
                                                                     "to_bucket": "bob-own", "to_key": "x"})),
                 404, "not_found")
    assert_error(client.post("/v1/shares", headers=bob, **json_body({"bucket": "ann-docs", "key": "plan.txt"})),
                 404, "not_found")
    # Read: bob sees it, cannot change it.
    assert client.put("/v1/grants/ann-docs/bob", headers=ann, **json_body({"level": "read"})).status_code == 200
    assert names(bob) == ["ann-docs"]
    assert client.get("/v1/content/ann-docs/plan.txt", headers=bob).data == b"data"
    assert_error(upload(client, bob, "ann-docs", "mine.txt"), 403, "forbidden")
    assert_error(client.put("/v1/grants/ann-docs/bob", headers=bob, **json_body({"level": "manage"})),
                 403, "forbidden")  # raising one's own grant
    # Write: bob uploads and deletes; manage: bob grants others and may delete the bucket.
    client.put("/v1/grants/ann-docs/bob", headers=ann, **json_body({"level": "write"}))
    assert upload(client, bob, "ann-docs", "mine.txt").status_code == 200
    assert_error(client.delete("/v1/files/ann-docs", headers=bob), 403, "forbidden")
    client.put("/v1/grants/ann-docs/bob", headers=ann, **json_body({"level": "manage"}))
    grants = client.get("/v1/grants/ann-docs", headers=bob).get_json()
    assert grants["owner"] == "ann" and [(g["user"], g["level"]) for g in grants["data"]] == [("bob", "manage")]
    # Taken away: gone at the next request.
    assert client.delete("/v1/grants/ann-docs/bob", headers=ann).status_code == 204
    assert_error(client.get("/v1/files/ann-docs", headers=bob), 404, "not_found")
    # Members may not do what admins do.
    for method, path in (("get", "/v1/users"), ("put", "/v1/quotas/ann-docs"), ("get", "/v1/quotas/users/ann")):
        assert_error(getattr(client, method)(path, headers=ann, **json_body({"max_bytes": 1})), 403, "forbidden")


def test_a_member_cannot_raise_their_own_role_or_make_a_stronger_token(app, client, runner):
    admin = make_token(runner, "admin")
    ann = person(app, client, admin, "ann")
    assert_error(client.patch("/v1/users/ann", headers=ann, **json_body({"role": "admin"})), 403, "forbidden")
    assert_error(client.post("/v1/tokens", headers=ann, **json_body({"name": "x", "scope": "admin"})),
                 403, "forbidden")
    reader = client.post("/v1/tokens", headers=ann, **json_body({"name": "r", "scope": "read"})).get_json()["token"]
    assert_error(client.post("/v1/tokens", headers=bearer(reader), **json_body({"name": "w", "scope": "write"})),
                 403, "forbidden")  # a token makes none stronger than itself
    assert client.get("/v1/users/ann", headers=bearer(admin)).get_json()["role"] == "member"


def test_tokens_are_listed_revoked_and_expire(app, client, runner):
    admin = make_token(runner, "admin")
    ann, bob = person(app, client, admin, "ann"), person(app, client, admin, "bob")
    made = client.post("/v1/tokens", headers=ann, **json_body({"name": "ci", "scope": "write", "expires_in": 3600}))
    secret, token_id = made.get_json()["token"], made.get_json()["id"]
    assert client.get("/v1/files", headers=bearer(secret)).status_code == 200
    listed = {t["name"]: t for t in client.get("/v1/tokens", headers=ann).get_json()["data"]}
    assert set(listed) == {"laptop", "ci"} and listed["ci"]["state"] == "active"
    assert listed["ci"]["last_used_at"] is not None and listed["ci"]["last_used_from"] == "127.0.0.1"
    assert listed["ci"]["expires_at"] > listed["ci"]["created_at"] and "token" not in listed["ci"]
    # Another member's token id: 404, and nothing revoked.
    assert_error(client.delete(f"/v1/tokens/{token_id}", headers=bob), 404, "not_found")
    assert client.get("/v1/files", headers=bearer(secret)).status_code == 200
    assert client.delete(f"/v1/tokens/{token_id}", headers=ann).get_json()["state"] == "revoked"
    assert_error(client.get("/v1/files", headers=bearer(secret)), 401, "unauthorized")
    # An admin sees and revokes anyone's.
    everyone = client.get("/v1/tokens", headers=bearer(admin)).get_json()["data"]
    assert {t["user"] for t in everyone} >= {"ann", "bob", None}
    bobs = next(t for t in everyone if t["user"] == "bob")
    assert client.delete(f"/v1/tokens/{bobs['id']}", headers=bearer(admin)).status_code == 200
    assert_error(client.get("/v1/files", headers=bob), 401, "unauthorized")
    for bad in ({"name": "x", "expires_in": -5}, {"name": "x", "expires_in": "soon"}, {"name": "", "scope": "read"},
                {"name": "x", "scope": "root"}, {"name": "x", "expires_in": 5, "expires_at": 2**40}):
        assert client.post("/v1/tokens", headers=ann, **json_body(bad)).status_code == 400


def test_an_expired_token_is_refused(app, client, runner, monkeypatch):
    admin = make_token(runner, "admin")
    ann = person(app, client, admin, "ann")
    made = client.post("/v1/tokens", headers=ann, **json_body({"name": "short", "expires_in": 60}))
    secret = made.get_json()["token"]
    assert client.get("/v1/files", headers=bearer(secret)).status_code == 200
    import time as real_time

    later = real_time.time() + 61
    monkeypatch.setattr("files_app.services.accounts.time.time", lambda: later)
    assert_error(client.get("/v1/files", headers=bearer(secret)), 401, "unauthorized")
    assert client.get("/v1/files", headers=ann).status_code == 200


def test_disabling_a_person_stops_their_sessions_tokens_and_shares(app, client, runner):
    admin = make_token(runner, "admin")
    ann = person(app, client, admin, "ann")
    browser, csrf = signed_in(app, "ann")
    upload(client, ann, "ann-docs", "a.txt")
    link = client.post("/v1/shares", headers=ann, **json_body({"bucket": "ann-docs", "key": "a.txt"})).get_json()
    secret = link["url"].rsplit("/", 1)[1]
    assert client.get(f"/s/{secret}/f/a.txt").status_code == 200
    assert client.patch("/v1/users/ann", headers=bearer(admin), **json_body({"disabled": True})).get_json()["disabled"]
    assert_error(client.get("/v1/files", headers=ann), 401, "unauthorized")
    assert browser.get("/v1/files").status_code == 401  # the web session ended
    assert client.get(f"/s/{secret}/f/a.txt").status_code == 410
    failed = browser.post("/login", data={"username": "ann", "password": PASSWORD,
                                          "csrf_token": csrf_of(browser.get("/login"))})
    assert failed.status_code == 403 and b"This account is disabled" in failed.data  # the right password, told why
    refused = client.get("/v1/audit?action=signin&user=ann", headers=bearer(admin)).get_json()["data"][0]
    assert refused["outcome"] == "disabled"
    client.patch("/v1/users/ann", headers=bearer(admin), **json_body({"disabled": False}))
    assert client.get("/v1/files", headers=ann).status_code == 200  # tokens work again once enabled


def test_the_last_admin_stays_and_a_bucket_owner_hands_over(app, client, runner):
    first = client.post("/v1/users", **json_body({"name": "root", "password": PASSWORD}))  # open: the first person
    assert first.status_code == 201 and first.get_json()["role"] == "admin"
    root = bearer(person_token(app, "root"))
    for change in ({"role": "member"}, {"disabled": True}):
        assert_error(client.patch("/v1/users/root", headers=root, **json_body(change)), 409, "last_admin")
    assert_error(client.delete("/v1/users/root", headers=root), 409, "last_admin")
    ann = person(app, client, root.get("Authorization").split()[1], "ann")
    upload(client, ann, "ann-docs", "a.txt")
    assert_error(client.delete("/v1/users/ann", headers=root), 409, "owns_buckets")
    assert client.delete("/v1/users/ann?transfer_to=root", headers=root).status_code == 204
    assert_error(client.get("/v1/files", headers=ann), 401, "unauthorized")  # their tokens went with them
    assert client.get("/v1/grants/ann-docs", headers=root).get_json()["owner"] == "root"
    # Her files stay, and still say who uploaded them (a revoked token keeps its name).
    assert client.get("/v1/files/ann-docs/a.txt", headers=root).get_json()["uploaded_by"] == "token laptop"


def person_token(app, name: str) -> str:
    browser, csrf = signed_in(app, name)
    return browser.post("/v1/tokens", headers={"X-CSRF-Token": csrf},
                        **json_body({"name": "admin-laptop", "scope": "admin"})).get_json()["token"]


def test_two_admins_demoting_each_other_leave_one(app, client, runner):
    admin = make_token(runner, "admin")
    for name in ("ann", "bob"):
        client.post("/v1/users", headers=bearer(admin), **json_body({"name": name, "password": PASSWORD,
                                                                     "role": "admin"}))
    client.delete(f"/v1/tokens/{client.get('/v1/tokens', headers=bearer(admin)).get_json()['data'][-1]['id']}",
                  headers=bearer(admin))
    # (The race itself runs against a real server in tests/e2e/test_team_races.py; here, in turn.)
    ann, bob = bearer(person_token(app, "ann")), bearer(person_token(app, "bob"))
    assert client.patch("/v1/users/bob", headers=ann, **json_body({"role": "member"})).status_code == 200
    assert_error(client.patch("/v1/users/ann", headers=bob, **json_body({"role": "member"})), 403, "forbidden")
    assert client.get("/v1/users/ann", headers=ann).get_json()["role"] == "admin"


def test_passwords_are_checked_and_a_change_ends_other_sessions(app, client, runner):
    admin = make_token(runner, "admin")
    for weak, code in (("short", "invalid_password"), ("password123", "common_password"),
                       ("qwertyuiop", "common_password")):
        assert_error(client.post("/v1/users", headers=bearer(admin), **json_body({"name": "x", "password": weak})),
                     400, code)
    person(app, client, admin, "ann")
    here, csrf = signed_in(app, "ann")
    elsewhere, _ = signed_in(app, "ann")
    wrong = here.post("/v1/account/password", headers={"X-CSRF-Token": csrf},
                      **json_body({"current_password": "nope", "new_password": "a new long phrase"}))
    assert_error(wrong, 403, "forbidden")
    changed = here.post("/v1/account/password", headers={"X-CSRF-Token": csrf},
                        **json_body({"current_password": PASSWORD, "new_password": "a new long phrase"}))
    assert changed.status_code == 204
    assert here.get("/v1/files").status_code == 200 and elsewhere.get("/v1/files").status_code == 401
    signed_in(app, "ann", "a new long phrase")
    sessions = here.get("/v1/account/sessions").get_json()["data"]
    assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
    assert here.delete("/v1/account/sessions", headers={"X-CSRF-Token": csrf}).get_json()["ended"] == 2
    assert here.get("/v1/files").status_code == 401


def test_the_audit_log_says_who_did_what_and_managers_see_only_theirs(app, client, runner):
    admin = make_token(runner, "admin")
    ann, bob = person(app, client, admin, "ann"), person(app, client, admin, "bob")
    upload(client, ann, "ann-docs", "a.txt", b"12345")
    client.post("/v1/move", headers=ann, **json_body({"bucket": "ann-docs", "key": "a.txt", "to_key": "b.txt"}))
    client.delete("/v1/files/ann-docs/b.txt", headers=ann)
    upload(client, bob, "bob-docs", "secret.txt")
    client.put("/v1/grants/ann-docs/bob", headers=ann, **json_body({"level": "read"}))
    entries = client.get("/v1/audit?bucket=ann-docs", headers=bearer(admin)).get_json()["data"]
    assert [e["action"] for e in entries] == ["grant", "delete", "move", "upload", "bucket.create"]
    assert {e["actor_name"] for e in entries} == {"ann (token laptop)"} and entries[3]["bytes"] == 5
    assert entries[2]["detail"] == {"to_bucket": "ann-docs", "to_key": "b.txt", "replaced": False}
    # Each sees the entries of the buckets they manage: not those of a bucket they may only read.
    seen = client.get("/v1/audit", headers=ann).get_json()["data"]
    assert seen and {e["bucket"] for e in seen} == {"ann-docs"}
    assert {e["bucket"] for e in client.get("/v1/audit", headers=bob).get_json()["data"]} == {"bob-docs"}
    assert client.get("/v1/audit?bucket=ann-docs", headers=bob).get_json()["data"] == []
    assert client.get("/v1/audit?bucket=bob-docs", headers=ann).get_json()["data"] == []
    # Filters and paging.
    signins = client.get("/v1/audit?action=signin&user=ann", headers=bearer(admin)).get_json()["data"]
    assert signins and all(e["action"] == "signin" and e["outcome"] == "ok" for e in signins)
    first = client.get("/v1/audit?limit=2", headers=bearer(admin)).get_json()
    second = client.get(f"/v1/audit?limit=2&cursor={first['next_cursor']}", headers=bearer(admin)).get_json()
    assert first["has_more"] and second["data"][0]["id"] < first["data"][-1]["id"]
    for bad in ("limit=0", "cursor=x", "action=nothing", "since=yesterday"):
        assert client.get(f"/v1/audit?{bad}", headers=bearer(admin)).status_code == 400


def test_a_refused_change_leaves_no_entry(app, client, runner):
    admin = bearer(make_token(runner, "admin"))
    upload(client, admin, "b", "k")
    before = len(client.get("/v1/audit?limit=1000", headers=admin).get_json()["data"])
    assert client.put("/v1/files/b/k", data=b"x", headers={**admin, "If-None-Match": "*"}).status_code == 412
    assert client.delete("/v1/files/b", headers=admin).status_code == 409  # not empty
    assert len(client.get("/v1/audit?limit=1000", headers=admin).get_json()["data"]) == before


def test_a_members_openai_files_are_their_own(app, client, runner):
    admin = make_token(runner, "admin")
    ann, bob = person(app, client, admin, "ann"), person(app, client, admin, "bob")
    import io

    made = client.post("/v1/openai/v1/files", headers=ann, content_type="multipart/form-data",
                       data={"purpose": "assistants", "file": (io.BytesIO(b"{}"), "a.jsonl")}).get_json()
    assert [f["id"] for f in client.get("/v1/openai/v1/files", headers=ann).get_json()["data"]] == [made["id"]]
    assert client.get("/v1/openai/v1/files", headers=bob).get_json()["data"] == []
    for method, path in (("get", f"/files/{made['id']}"), ("get", f"/files/{made['id']}/content"),
                         ("delete", f"/files/{made['id']}")):
        assert getattr(client, method)(f"/v1/openai/v1{path}", headers=bob).status_code == 404
    everyone = client.get("/v1/openai/v1/files", headers=bearer(admin)).get_json()["data"]
    assert [f["id"] for f in everyone] == [made["id"]]
    # The service's bucket is nobody's: members do not browse it through the files API.
    assert_error(client.get("/v1/files/openai", headers=ann), 404, "not_found")


def test_gc_prunes_audit_entries_past_files_audit_days(app, client, runner, monkeypatch):
    admin = bearer(make_token(runner, "admin"))
    upload(client, admin, "b", "old.txt")
    import time as real_time

    later = real_time.time() + 366 * 86400  # a year and a day on: the entries so far are past 365 days
    monkeypatch.setattr("files_app.time.time", lambda: later)
    with app.app_context():
        counts = app.extensions["files"].collect_garbage()
    monkeypatch.undo()
    assert counts["old_audit_entries"] >= 2  # the token's creation, the bucket, the upload
    upload(client, admin, "b", "new.txt")
    assert [e["key"] for e in client.get("/v1/audit?action=upload", headers=admin).get_json()["data"]] == ["new.txt"]
