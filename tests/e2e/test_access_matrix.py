"""Who may call what, for every route in the app's url_map and each of its methods, against a real
server, in both configurations: anonymous, revoked, expired and disabled credentials, operator tokens
(read, write, admin, confined in and out of the bucket), members without a grant and with read,
write and manage, the bucket's owner, and an admin person.

The expected answer of each cell comes from the table below, written from the issue's rules, not
from the routes' declarations: a route added without a row here fails the test, and a declaration
that disagrees with the table fails its cells. Each request is made so that, once allowed, it
changes nothing (a refused body, a name that does not exist, a form without its CSRF token): the
same data serves every cell.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from files_app import create_app
from tests.helpers import flask_files_ok as flask_cli

PRINCIPALS = ("anonymous", "revoked", "expired", "disabled", "read", "write", "admin", "confined_in",
              "confined_out", "member_none", "member_read", "member_write", "member_manage", "owner", "admin_person")
# What each kind of route answers each principal: ok (allowed: whatever the route then says of the
# request itself), 401 (who are you? a page sends you to sign in), 403 (not allowed), 404 (the
# bucket does not exist for you).
# Columns in the order of PRINCIPALS: anonymous, revoked, expired, disabled, read, write, admin,
# confined in, confined out, member with no grant, with read, write, manage, owner, admin person.
EXPECTED = {
    "public":        "ok  ok  ok  ok  ok  ok  ok  ok  ok  ok  ok  ok  ok  ok  ok",
    "authenticated": "401 401 401 401 ok  ok  ok  ok  ok  ok  ok  ok  ok  ok  ok",
    "person":        "401 401 401 401 403 403 403 403 403 ok  ok  ok  ok  ok  ok",
    "read:scope":    "401 401 401 401 ok  ok  ok  ok  ok  ok  ok  ok  ok  ok  ok",
    "write:scope":   "401 401 401 401 403 ok  ok  ok  ok  ok  ok  ok  ok  ok  ok",
    "openai:read":   "401 401 401 401 ok  ok  ok  403 403 ok  ok  ok  ok  ok  ok",
    "openai:write":  "401 401 401 401 403 ok  ok  403 403 ok  ok  ok  ok  ok  ok",
    "read":          "401 401 401 401 ok  ok  ok  ok  403 404 ok  ok  ok  ok  ok",
    "write":         "401 401 401 401 403 ok  ok  ok  403 404 403 ok  ok  ok  ok",
    "manage":        "401 401 401 401 403 403 ok  403 403 404 403 403 ok  ok  ok",
    "admin":         "401 401 401 401 403 403 ok  403 403 403 403 403 403 403 ok",
}
B = "team"  # the bucket every bucket route names: the owner's, with f.txt in it
_BODY = {"content": b'{"bucket": "team", "key": "k", "size": -1}'}  # refused once allowed (size)


def json_of(value) -> dict:
    return {"content": json.dumps(value).encode(), "headers": {"Content-Type": "application/json"}}


# "METHOD rule": (kind, the request: path and httpx keyword arguments)
ROUTES: dict[str, tuple[str, str, dict]] = {
    "GET /": ("authenticated", "/", {}),
    "GET /account": ("authenticated", "/account", {}),
    "POST /account/password": ("authenticated", "/account/password", {}),
    "POST /account/sign-out-everywhere": ("authenticated", "/account/sign-out-everywhere", {}),
    "POST /account/tokens": ("authenticated", "/account/tokens", {}),
    "POST /account/tokens/<int:token_id>/revoke": ("authenticated", "/account/tokens/999999/revoke", {}),
    "GET /activity": ("authenticated", "/activity", {}),
    "GET /b/<bucket>/": ("read", f"/b/{B}/", {}),
    "GET /b/<bucket>/<path:path>": ("read", f"/b/{B}/f.txt", {}),
    "GET /b/<bucket>/access": ("manage", f"/b/{B}/access", {}),
    "POST /b/<bucket>/access": ("manage", f"/b/{B}/access", {}),
    "POST /b/<bucket>/delete": ("write", f"/b/{B}/delete", {}),
    "POST /b/<bucket>/delete-bucket": ("manage", f"/b/{B}/delete-bucket", {}),
    "GET /b/<bucket>/delete-folder": ("write", f"/b/{B}/delete-folder?prefix=none/", {}),
    "POST /b/<bucket>/delete-folder": ("write", f"/b/{B}/delete-folder", {}),
    "POST /b/<bucket>/move": ("write", f"/b/{B}/move", {}),
    "GET /b/<bucket>/new-folder": ("write", f"/b/{B}/new-folder?name=x", {}),
    "POST /b/<bucket>/quota": ("admin", f"/b/{B}/quota", {}),
    "POST /b/<bucket>/share": ("write", f"/b/{B}/share", {}),
    "GET /b/<bucket>/share": ("read", f"/b/{B}/share?key=f.txt", {}),
    "POST /b/<bucket>/zip": ("read", f"/b/{B}/zip", {}),
    "POST /buckets": ("write:scope", "/buckets", {}),
    "GET /favicon.ico": ("public", "/favicon.ico", {}),
    "GET /healthz": ("public", "/healthz", {}),
    "GET /hooks": ("admin", "/hooks", {}),
    "POST /hooks": ("admin", "/hooks", {}),
    "GET /hooks/<int:hook_id>": ("admin", "/hooks/999999", {}),
    "POST /hooks/<int:hook_id>/delete": ("admin", "/hooks/999999/delete", {}),
    "GET /login": ("public", "/login", {}),
    "POST /login": ("public", "/login", {}),
    "POST /logout": ("authenticated", "/logout", {}),
    "GET /metrics": ("public", "/metrics", {}),  # from loopback (FILES_METRICS=local); the view decides
    "POST /people": ("admin", "/people", {}),
    "GET /people": ("admin", "/people", {}),
    "GET /people/<name>": ("admin", "/people/nobody", {}),
    "POST /people/<name>/delete": ("admin", "/people/nobody/delete", {}),
    "POST /people/<name>/disabled": ("admin", "/people/nobody/disabled", {}),
    "POST /people/<name>/password": ("admin", "/people/nobody/password", {}),
    "POST /people/<name>/role": ("admin", "/people/nobody/role", {}),
    "GET /quotas": ("admin", "/quotas", {}),
    "POST /quotas": ("admin", "/quotas", {}),
    "GET /s/<secret>": ("public", "/s/not-a-real-secret", {}),
    "POST /s/<secret>": ("public", "/s/not-a-real-secret", {}),
    "GET /s/<secret>/f/<path:key>": ("public", "/s/not-a-real-secret/f/x", {}),
    "GET /s/<secret>/t/<path:key>": ("public", "/s/not-a-real-secret/t/x", {}),
    "POST /s/<secret>/uploads": ("public", "/s/not-a-real-secret/uploads", {}),
    "DELETE /s/<secret>/uploads/<session_id>": ("public", "/s/not-a-real-secret/uploads/x", {}),
    "PATCH /s/<secret>/uploads/<session_id>": ("public", "/s/not-a-real-secret/uploads/x", {}),
    "GET /s/<secret>/zip": ("public", "/s/not-a-real-secret/zip", {}),
    "GET /shares": ("authenticated", "/shares", {}),
    "POST /shares/<share_id>/revoke": ("authenticated", "/shares/shr_0000000000000000/revoke", {}),
    "GET /static/<path:filename>": ("public", "/static/app.css", {}),
    "GET /tokens": ("admin", "/tokens", {}),
    "POST /tokens/<int:token_id>/revoke": ("admin", "/tokens/999999/revoke", {}),
    "GET /v1/account": ("authenticated", "/v1/account", {}),
    "POST /v1/account/password": ("person", "/v1/account/password", json_of({"current_password": 1})),
    "GET /v1/account/sessions": ("person", "/v1/account/sessions", {}),
    "DELETE /v1/account/sessions": ("person", "/v1/account/sessions", {}),
    "GET /v1/audit": ("authenticated", "/v1/audit", {}),
    "GET /v1/content/<bucket>/<path:key>": ("read", f"/v1/content/{B}/f.txt", {}),
    "POST /v1/copy": ("read", "/v1/copy", json_of({"bucket": B, "key": "missing", "to_bucket": B, "to_key": "x"})),
    "POST /v1/files": ("write", "/v1/files", _BODY),
    "GET /v1/files": ("authenticated", "/v1/files", {}),
    "PATCH /v1/files": ("public", "/v1/files", {}),
    "POST /v1/files/": ("write", "/v1/files/", _BODY),
    "PATCH /v1/files/": ("public", "/v1/files/", {}),
    "PUT /v1/files/<bucket>": ("write", f"/v1/files/{B}", {}),  # (it exists: 409 once allowed)
    "DELETE /v1/files/<bucket>": ("manage", f"/v1/files/{B}", {}),
    "GET /v1/files/<bucket>": ("read", f"/v1/files/{B}", {}),
    "PATCH /v1/files/<bucket>": ("public", f"/v1/files/{B}", {}),
    "DELETE /v1/files/<bucket>/<path:key>": ("write", f"/v1/files/{B}/missing", {}),
    "GET /v1/files/<bucket>/<path:key>": ("read", f"/v1/files/{B}/f.txt", {}),
    "PATCH /v1/files/<bucket>/<path:key>": ("public", f"/v1/files/{B}/f.txt", {}),
    "PUT /v1/files/<bucket>/<path:key>": ("write", f"/v1/files/{B}/f.txt", {"content": b"x",
                                                                            "headers": {"If-None-Match": "*"}}),
    "DELETE /v1/files/session:<session_id>": ("write:scope", "/v1/files/session:missing", {}),
    "PATCH /v1/files/session:<session_id>": ("write:scope", "/v1/files/session:missing", {"headers": {
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}}),
    "GET /v1/files/session:<session_id>": ("read:scope", "/v1/files/session:missing", {}),
    "POST /v1/files/session:<session_id>": ("write:scope", "/v1/files/session:missing", {"content": b"x"}),
    "GET /v1/folders/<bucket>/<path:prefix>": ("read", f"/v1/folders/{B}/none/", {}),
    "DELETE /v1/folders/<bucket>/<path:prefix>": ("write", f"/v1/folders/{B}/none/", {}),
    "GET /v1/trash/<bucket>": ("write", f"/v1/trash/{B}", {}),
    "POST /v1/trash/<bucket>/restore": ("write", f"/v1/trash/{B}/restore", json_of({})),
    "DELETE /v1/trash/<bucket>": ("manage", f"/v1/trash/{B}", json_of({"ids": []})),
    "GET /v1/versions/<bucket>/<path:key>": ("read", f"/v1/versions/{B}/f.txt", {}),
    "POST /v1/versions/<bucket>/<path:key>": ("write", f"/v1/versions/{B}/f.txt", json_of({})),
    "DELETE /v1/versions/<bucket>/<path:key>": ("manage", f"/v1/versions/{B}/f.txt", {}),
    "POST /b/<bucket>/undo-delete": ("write", f"/b/{B}/undo-delete", {}),
    "GET /b/<bucket>/trash": ("write", f"/b/{B}/trash", {}),
    "POST /b/<bucket>/trash/restore": ("write", f"/b/{B}/trash/restore", {}),
    "POST /b/<bucket>/trash/purge": ("manage", f"/b/{B}/trash/purge", {}),
    "GET /b/<bucket>/trash/empty": ("manage", f"/b/{B}/trash/empty", {}),
    "POST /b/<bucket>/trash/empty": ("manage", f"/b/{B}/trash/empty", {}),
    "POST /b/<bucket>/restore-version": ("write", f"/b/{B}/restore-version", {}),
    "GET /v1/grants/<bucket>": ("manage", f"/v1/grants/{B}", {}),
    "DELETE /v1/grants/<bucket>/<user>": ("manage", f"/v1/grants/{B}/nobody", {}),
    "PUT /v1/grants/<bucket>/<user>": ("manage", f"/v1/grants/{B}/nobody", json_of({"level": "root"})),
    "GET /v1/hooks": ("admin", "/v1/hooks", {}),
    "POST /v1/hooks": ("admin", "/v1/hooks", json_of({"url": "ftp://127.0.0.1/", "actions": ["*"]})),
    "GET /v1/hooks/<int:hook_id>": ("admin", "/v1/hooks/999999", {}),
    "PATCH /v1/hooks/<int:hook_id>": ("admin", "/v1/hooks/999999", json_of({"enabled": False})),
    "DELETE /v1/hooks/<int:hook_id>": ("admin", "/v1/hooks/999999", {}),
    "GET /v1/hooks/<int:hook_id>/deliveries": ("admin", "/v1/hooks/999999/deliveries", {}),
    "POST /v1/move": ("write", "/v1/move", json_of({"bucket": B, "key": "missing", "to_key": "x"})),
    "POST /v1/openai/v1/files": ("openai:write", "/v1/openai/v1/files", {}),
    "GET /v1/openai/v1/files": ("openai:read", "/v1/openai/v1/files", {}),
    "DELETE /v1/openai/v1/files/<file_id>": ("openai:write", "/v1/openai/v1/files/file-missing", {}),
    "GET /v1/openai/v1/files/<file_id>": ("openai:read", "/v1/openai/v1/files/file-missing", {}),
    "GET /v1/openai/v1/files/<file_id>/content": ("openai:read", "/v1/openai/v1/files/file-missing/content", {}),
    "POST /v1/openai/v1/uploads": ("openai:write", "/v1/openai/v1/uploads", json_of({})),
    "POST /v1/openai/v1/uploads/<upload_id>/cancel": ("openai:write", "/v1/openai/v1/uploads/upload_x/cancel", {}),
    "POST /v1/openai/v1/uploads/<upload_id>/complete": ("openai:write", "/v1/openai/v1/uploads/upload_x/complete",
                                                        json_of({"part_ids": []})),
    "POST /v1/openai/v1/uploads/<upload_id>/parts": ("openai:write", "/v1/openai/v1/uploads/upload_x/parts", {}),
    "GET /v1/openapi.json": ("public", "/v1/openapi.json", {}),
    "GET /v1/quotas/<any(users, tokens):kind>/<name>": ("admin", "/v1/quotas/users/nobody", {}),
    "PUT /v1/quotas/<any(users, tokens):kind>/<name>": ("admin", "/v1/quotas/users/nobody", json_of({})),
    "GET /v1/quotas/<bucket>": ("read", f"/v1/quotas/{B}", {}),
    "PUT /v1/quotas/<bucket>": ("admin", f"/v1/quotas/{B}", json_of({"max_bytes": -1})),
    "POST /v1/shares": ("write", "/v1/shares", json_of({"bucket": B})),
    "GET /v1/shares": ("authenticated", "/v1/shares", {}),
    "GET /v1/shares/<share_id>": ("authenticated", "/v1/shares/shr_0000000000000000", {}),
    "DELETE /v1/shares/<share_id>": ("authenticated", "/v1/shares/shr_0000000000000000", {}),
    "GET /v1/thumbnails/<bucket>/<path:key>": ("read", f"/v1/thumbnails/{B}/f.txt", {}),
    "POST /v1/tokens": ("authenticated", "/v1/tokens", json_of({"name": "x", "scope": "root"})),
    "GET /v1/tokens": ("authenticated", "/v1/tokens", {}),
    "DELETE /v1/tokens/<int:token_id>": ("write:scope", "/v1/tokens/999999", {}),  # (a read one: only itself)
    "POST /v1/users": ("admin", "/v1/users", json_of({"name": "x"})),
    "GET /v1/users": ("admin", "/v1/users", {}),
    "DELETE /v1/users/<name>": ("admin", "/v1/users/nobody", {}),
    "GET /v1/users/<name>": ("admin", "/v1/users/nobody", {}),
    "PATCH /v1/users/<name>": ("admin", "/v1/users/nobody", json_of({"unknown": 1})),
    "GET /v1/zip/<bucket>": ("read", f"/v1/zip/{B}", {}),
}
# Copying reads the source bucket (read) and writes the target (the same bucket here: write).
ROUTES["POST /v1/copy"] = ("write", *ROUTES["POST /v1/copy"][1:])


def outcome(response: httpx.Response) -> str:
    """What a response says about access (and nothing else)."""
    body = response.text
    if response.status_code == 401 or (response.status_code in (302, 303)
                                       and "/login" in response.headers.get("Location", "")):
        return "401"
    if response.status_code == 403:
        # A form without its CSRF token was let through to the form's own check: allowed.
        return "ok" if ("csrf_failed" in body or "did not come from this site" in body) else "403"
    if response.status_code == 404 and "not shared with you" in body:
        return "404"
    return "ok"


def personal_token(server, name: str, password: str, **fields) -> str:
    with httpx.Client(base_url=server.url) as browser:
        csrf = browser.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        signed = browser.post("/login", data={"username": name, "password": password, "csrf_token": csrf})
        assert signed.status_code == 302, signed.text
        page = browser.get("/").text
        csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
        made = browser.post("/v1/tokens", headers={"X-CSRF-Token": csrf},
                            json={"name": "matrix", "scope": "manage", **fields})
        assert made.status_code == 201, made.text
        return made.json()["token"]


def credentials(server) -> dict[str, dict]:
    """Every principal's Authorization header, over one bucket (`team`, the owner's, with f.txt)."""
    admin = flask_cli(server, "token", "create", "--name", "matrix-admin", "--scope", "admin")
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"})
    password = "matrix pass phrase"
    tokens = {"admin": admin}
    for name, role in (("owner", "member"), ("member_none", "member"), ("member_read", "member"),
                       ("member_write", "member"), ("member_manage", "member"), ("disabled", "member"),
                       ("admin_person", "admin")):
        assert api.post("/v1/users", json={"name": name, "password": password, "role": role}).status_code == 201
        tokens[name] = personal_token(server, name, password, scope="admin" if role == "admin" else "manage")
    owner = {"Authorization": f"Bearer {tokens['owner']}"}
    assert httpx.put(f"{server.url}/v1/files/{B}/f.txt", content=b"hello", headers=owner).status_code == 200
    assert api.put("/v1/files/other").status_code == 201
    for level in ("read", "write", "manage"):
        granted = httpx.put(f"{server.url}/v1/grants/{B}/member_{level}", json={"level": level}, headers=owner)
        assert granted.status_code == 200, granted.text
    for name, scope, bucket in (("read", "read", None), ("write", "write", None), ("confined_in", "write", B),
                                ("confined_out", "write", "other"), ("revoked", "write", None)):
        tokens[name] = flask_cli(server, "token", "create", "--name", name, "--scope", scope,
                                 *(["--bucket", bucket] if bucket else []))
    revoked = next(t for t in api.get("/v1/tokens").json()["data"] if t["name"] == "revoked")
    assert api.delete(f"/v1/tokens/{revoked['id']}").status_code == 200
    assert api.patch("/v1/users/disabled", json={"disabled": True}).status_code == 200
    tokens["expired"] = expired_token(server)
    return {name: ({"Authorization": f"Bearer {tokens[name]}"} if name in tokens else {}) for name in PRINCIPALS}


def expired_token(server) -> str:
    """A token whose expiry has passed, written by the service itself on the server's database."""
    app = create_app({**server.env, "FILES_DATA_DIR": str(server.data_dir)})
    with app.app_context():
        _, secret = app.extensions["files"].accounts.create_token("expired", "write", expires_at=1)
        from files_app.models import db

        db.engine.dispose()
    return secret


def test_every_route_answers_every_principal_as_the_table_says(any_server):
    server = any_server
    rules = {f"{method} {rule.rule}" for rule in create_app({"FILES_DATA_DIR": str(server.data_dir),
                                                              **server.env}).url_map.iter_rules()
             for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert sorted(rules - set(ROUTES)) == [], "routes without a row in this test's table"
    assert sorted(set(ROUTES) - rules) == [], "rows for routes that do not exist"
    headers = credentials(server)
    cells = [(route, principal) for route in sorted(ROUTES) for principal in PRINCIPALS]

    def ask(http: httpx.Client, cell: tuple[str, str]) -> httpx.Response:
        route, principal = cell
        _kind, path, options = ROUTES[route]
        return http.request(route.split()[0], path, content=options.get("content"),
                            headers={**options.get("headers", {}), **headers[principal]})

    # No cell changes what another sees (the end of this test checks it), so they go 8 at a time;
    # the answers are judged here, in the test's own thread.
    with httpx.Client(base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=8)) as http, \
            ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda cell: ask(http, cell), cells))
    wrong = []
    for (route, principal), response in zip(cells, answers, strict=True):
        assert response.status_code < 500, (route, principal, response.text)
        expected = dict(zip(PRINCIPALS, EXPECTED[ROUTES[route][0]].split(), strict=True))[principal]
        if outcome(response) != expected:
            wrong.append(f"{route} as {principal}: expected {expected}, got "
                         f"{response.status_code} {response.text[:160]!r}")
    assert wrong == [], "\n".join(wrong)
    assert len(answers) == len(ROUTES) * len(PRINCIPALS)
    # Nothing the matrix sent changed the data it ran over.
    owner = headers["owner"]
    assert httpx.get(f"{server.url}/v1/content/{B}/f.txt", headers=owner).content == b"hello"
    assert [f["key"] for f in httpx.get(f"{server.url}/v1/files/{B}", headers=owner).json()["data"]] == ["f.txt"]


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_the_table_is_complete(kind):
    assert len(EXPECTED[kind].split()) == len(PRINCIPALS)
