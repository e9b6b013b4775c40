"""Attacks on people, roles, grants, tokens, web sessions, the audit log and /metrics, against a real
server in both configurations (SQLite and the data dir; PostgreSQL and SeaweedFS), as someone who
holds one credential of the service would try them: another member's ids, raising their own access,
a token escaping its bucket or its maker, cross-site requests riding a cookie, credentials that
should be dead, hostile bodies, floods.

Each test documents a defence that holds. Thirteen of them first failed (a member claiming the
OpenAI bucket, a confined token reading another's audit log, a removed grant leaving uploads
writing, parallel password guesses...); the product was fixed and they pass now.

Most tests share one server per configuration (`team`, module-scoped) and work on names of their
own (a prefix per test), so that they can run in any order. Requests that fail a sign-in or a
password check come from addresses of their own (127.0.0.2...), so that the per-address sign-in
limit of one test never throttles another. Every request goes to 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest

from tests.live_server import GunicornServer

PASSWORD = "attack pass phrase"
TUS = {"Tus-Resumable": "1.0.0"}
TUS_PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tus_metadata(**fields: str) -> str:
    return ",".join(f"{name} {base64.b64encode(value.encode()).decode()}" for name, value in fields.items())


class Person:
    """Someone signed in with a browser (a cookie and the page's CSRF token), who makes tokens."""

    def __init__(self, team: Team, name: str, password: str = PASSWORD):
        self.team, self.name = team, name
        self.browser = team.sign_in(name, password)

    @property
    def csrf(self) -> str:
        return self.browser.csrf

    def token(self, scope: str = "manage", name: str | None = None, **fields) -> dict[str, str]:
        """A personal token's Authorization header (made with the cookie, as My account makes it)."""
        made = self.browser.post("/v1/tokens", headers={"X-CSRF-Token": self.csrf},
                                 json={"name": name or f"{self.name}-{scope}", "scope": scope, **fields})
        assert made.status_code == 201, made.text
        return bearer(made.json()["token"])


class Team:
    """One real server and its operator's admin token."""

    def __init__(self, server: GunicornServer, configuration: str = "local"):
        self.server, self.url, self.configuration = server, server.url, configuration
        self.clients: list[httpx.Client] = []
        self._per_thread = threading.local()
        # The service is open until a credential exists: its first token, made by the API as the
        # operator's CLI would make it (`flask files token create --scope admin`), belongs to nobody.
        first = httpx.post(f"{self.url}/v1/tokens", json={"name": "attacks", "scope": "admin"}, timeout=60)
        assert first.status_code == 201 and first.json()["user"] is None, first.text
        self.admin_token = first.json()["token"]
        self.api = self.client(bearer(self.admin_token))

    def client(self, headers: dict | None = None, address: str | None = None) -> httpx.Client:
        """A client; `address`: the loopback address it connects from (its own sign-in counters)."""
        transport = httpx.HTTPTransport(local_address=address) if address else None
        client = httpx.Client(base_url=self.url, headers=headers or {}, timeout=60, transport=transport)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def call(self, method: str, path: str, headers: dict | None = None, **options) -> httpx.Response:
        """One request with `headers` and no cookie (a client per thread, its connection kept alive)."""
        http = getattr(self._per_thread, "http", None)
        if http is None:
            http = self._per_thread.http = self.client()
        http.cookies.clear()
        return http.request(method, path, headers=headers or {}, **options)

    def add(self, name: str, role: str = "member", password: str = PASSWORD) -> Person:
        made = self.api.post("/v1/users", json={"name": name, "password": password, "role": role})
        assert made.status_code == 201, made.text
        return Person(self, name, password)

    def people(self, *names: str, role: str = "member") -> list[Person]:
        """Several people at once (each costs two password hashes on the server: made in parallel)."""
        with ThreadPoolExecutor(len(names)) as pool:
            return list(pool.map(lambda name: self.add(name, role), names))

    def sign_in(self, name: str, password: str = PASSWORD, address: str | None = None) -> httpx.Client:
        browser = self.client(address=address)
        csrf = browser.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        signed = browser.post("/login", data={"username": name, "password": password, "csrf_token": csrf})
        assert signed.status_code == 302, signed.text
        browser.csrf = browser.get("/").text.split('name="csrf-token" content="')[1].split('"')[0]
        return browser

    def operator_token(self, name: str, scope: str, bucket: str | None = None) -> dict[str, str]:
        """A token of nobody's, as `flask files token create` makes them (an operator's admin token
        makes them by the API too, and much faster than a CLI process)."""
        made = self.api.post("/v1/tokens", json={"name": name, "scope": scope, "bucket": bucket})
        assert made.status_code == 201 and made.json()["user"] is None, made.text
        return bearer(made.json()["token"])

    def put(self, headers: dict, bucket: str, key: str, data: bytes = b"data") -> httpx.Response:
        return self.call("PUT", f"/v1/files/{bucket}/{key}", headers, content=data)

    def keys(self, bucket: str) -> list[str]:
        listed = self.api.get(f"/v1/files/{bucket}")
        assert listed.status_code == 200, listed.text
        return [item["key"] for item in listed.json()["data"]]

    def owner(self, bucket: str) -> str | None:
        return self.api.get(f"/v1/grants/{bucket}").json()["owner"]

    def token_state(self, name: str) -> str:
        return next(t["state"] for t in self.api.get("/v1/tokens").json()["data"] if t["name"] == name)


def _start(request, tmp_path_factory, **env: str):
    """A server in the configuration `request.param` names; (server, what to clean up after it)."""
    cleanup = []
    if request.param == "scaled":
        cluster, weed = request.getfixturevalue("postgres"), request.getfixturevalue("seaweedfs")
        url, bucket = cluster.create_database(), weed.create_bucket()
        env.update({"FILES_DATABASE_URL": url, **weed.settings(bucket)})
        cleanup += [lambda: cluster.drop_database(url), lambda: weed.delete_bucket(bucket)]
    try:
        server = GunicornServer(tmp_path_factory.mktemp(f"attacks-{request.param}") / "data", **env).start()
    except BaseException:
        for step in cleanup:
            step()
        raise
    return server, cleanup


CONFIGURATIONS = ["local", pytest.param("scaled", marks=pytest.mark.scaled)]


@pytest.fixture(scope="module", params=CONFIGURATIONS)
def team(request, tmp_path_factory):
    """One server per configuration for the whole module. FILES_METRICS=admin, as behind a reverse
    proxy (where every request comes from loopback): /metrics needs an admin's credential."""
    server, cleanup = _start(request, tmp_path_factory, FILES_METRICS="admin")
    team = None
    try:
        team = Team(server, request.param)
        yield team
    finally:
        if team is not None:
            team.close()  # no kept-alive connection left for the server's shutdown to wait on
        server.stop()
        for step in cleanup:
            step()


def error_code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


# --- another member's ids ---------------------------------------------------------------------------

def test_another_members_ids_are_404_and_change_nothing(team):
    """Tokens, upload sessions, share links, a file request's upload URL and grants of someone else:
    each is 404 (it does not exist for the caller), and stays as it was. (OpenAI ids: below, with the
    OpenAI bucket, which only that test may make.)"""
    ann, bob = team.people("ids-ann", "ids-bob")
    ann_token, bob_token = ann.token("write"), bob.token("manage")
    ann_token_id = next(t["id"] for t in ann.browser.get("/v1/tokens").json()["data"] if t["name"] == "ids-ann-write")

    # Tokens: by the API, by the My account form, and not listed.
    assert team.call("DELETE", f"/v1/tokens/{ann_token_id}", bob_token).status_code == 404
    revoke_form = bob.browser.post(f"/account/tokens/{ann_token_id}/revoke", data={"csrf_token": bob.csrf})
    assert revoke_form.status_code == 302
    assert ann_token_id not in [t["id"] for t in team.call("GET", "/v1/tokens", bob_token).json()["data"]]
    assert team.token_state("ids-ann-write") == "active"
    assert team.call("GET", "/v1/account", ann_token).status_code == 200

    # An upload session, in both dialects.
    assert team.put(ann_token, "ids-ann-b", "seen.txt").status_code == 200
    made = team.call("POST", "/v1/files", ann_token, json={"bucket": "ids-ann-b", "key": "k.bin", "size": 4})
    url = made.json()["url"]
    assert team.call("GET", url, bob_token).status_code == 404
    assert team.call("HEAD", url, {**bob_token, **TUS}).status_code == 404
    assert team.call("POST", url, {**bob_token, "Upload-Offset": "0"}, content=b"evil").status_code == 404
    assert team.call("PATCH", url, {**bob_token, **TUS_PATCH, "Upload-Offset": "0"}, content=b"evil").status_code == 404
    assert team.call("DELETE", url, bob_token).status_code == 404
    assert team.call("GET", url, ann_token).json()["offset"] == 0
    assert team.call("POST", url, {**ann_token, "Upload-Offset": "0"}, content=b"mine").status_code == 200
    assert team.call("GET", "/v1/content/ids-ann-b/k.bin", ann_token).content == b"mine"

    # A share link's handle, and a file request's upload URL naming someone else's session.
    share = team.call("POST", "/v1/shares", ann_token, json={"bucket": "ids-ann-b", "key": "seen.txt"}).json()
    assert team.call("GET", f"/v1/shares/{share['id']}", bob_token).status_code == 404
    assert team.call("DELETE", f"/v1/shares/{share['id']}", bob_token).status_code == 404
    assert team.call("GET", f"/v1/shares/{share['id']}", ann_token).json()["state"] == "active"
    request_link = team.call("POST", "/v1/shares", ann_token,
                             json={"bucket": "ids-ann-b", "prefix": "in/", "allow_upload": True}).json()["url"]
    other = team.call("POST", "/v1/files", ann_token, json={"bucket": "ids-ann-b", "key": "o.bin", "size": 4}).json()
    via_link = f"{request_link}/uploads/{other['id']}"
    assert team.call("PATCH", via_link, {**TUS_PATCH, "Upload-Offset": "0"}, content=b"evil").status_code == 404
    assert team.call("HEAD", via_link, TUS).status_code == 404
    assert team.call("DELETE", via_link, TUS).status_code == 404
    assert team.call("GET", other["url"], ann_token).json()["offset"] == 0

    # Grants on a bucket bob may not see: it does not exist for him.
    granted = team.call("PUT", "/v1/grants/ids-ann-b/ids-bob", bob_token, json={"level": "read"})
    assert granted.status_code == 404 and "not shared with you" in granted.text
    assert team.call("GET", "/v1/files/ids-ann-b", bob_token).status_code == 404


# --- raising one's own access ---------------------------------------------------------------------

def test_a_member_cannot_make_themselves_more(team):
    """Their role (API and People form), admin routes, an admin-scoped token, someone else's password."""
    eve = team.add("self-eve")
    eve_token = eve.token("manage")
    assert team.call("PATCH", "/v1/users/self-eve", eve_token, json={"role": "admin"}).status_code == 403
    with_cookie = eve.browser.patch("/v1/users/self-eve", json={"role": "admin"}, headers={"X-CSRF-Token": eve.csrf})
    assert with_cookie.status_code == 403
    assert eve.browser.post("/people/self-eve/role", data={"role": "admin", "csrf_token": eve.csrf}).status_code == 403
    assert team.call("POST", "/v1/users", eve_token, json={"name": "self-eve2", "password": PASSWORD,
                                                           "role": "admin"}).status_code == 403
    assert team.call("PATCH", "/v1/users/attacks-nobody", eve_token, json={"password": PASSWORD}).status_code == 403
    made = eve.browser.post("/v1/tokens", headers={"X-CSRF-Token": eve.csrf}, json={"name": "x", "scope": "admin"})
    assert made.status_code == 403
    assert team.call("POST", "/v1/tokens", eve_token, json={"name": "x", "scope": "admin"}).status_code == 403
    form = eve.browser.post("/account/tokens", data={"name": "form-admin", "scope": "admin", "csrf_token": eve.csrf})
    assert form.status_code == 302  # back to My account, with the refusal in a flash
    assert "form-admin" not in [t["name"] for t in team.api.get("/v1/tokens").json()["data"]]
    for path in ("/people", "/tokens", "/quotas", "/v1/users"):
        assert team.call("GET", path, eve_token).status_code == 403
    assert team.api.get("/v1/users/self-eve").json()["role"] == "member"
    assert team.call("GET", "/v1/account", eve_token).json()["scope"] == "manage"
    # An admin demoted keeps no admin power in the credentials made before: token and cookie alike.
    ex = team.add("self-ex", role="admin")
    spare = team.api.post("/v1/users", json={"name": "self-spare", "password": PASSWORD, "role": "admin"})
    assert spare.status_code == 201  # so that self-ex is not the last admin
    ex_token = ex.token("admin")
    assert team.call("GET", "/v1/users", ex_token).status_code == 200
    assert team.api.patch("/v1/users/self-ex", json={"role": "member"}).status_code == 200
    assert team.call("GET", "/v1/users", ex_token).status_code == 403
    assert team.call("GET", "/v1/account", ex_token).json()["scope"] == "manage"
    assert ex.browser.get("/people").status_code == 403
    assert team.call("POST", "/v1/users", ex_token, json={"name": "self-ex2", "password": PASSWORD}).status_code == 403


def test_grants_cannot_be_raised_past_what_the_caller_manages(team):
    """A member with read or write on someone's bucket cannot grant themselves more; one with none
    finds no bucket; a manage grantee may grant others (that is what manage is), but neither removes
    nor demotes the owner; a token confined elsewhere cannot touch the bucket's grants."""
    own, reader, writer, manager, outsider = team.people("grant-own", "grant-read", "grant-write", "grant-man",
                                                         "grant-out")
    own_token = own.token()
    assert team.put(own_token, "grant-b", "f.txt").status_code == 200
    assert team.put(own_token, "grant-own-other", "f.txt").status_code == 200
    for person, level in ((reader, "read"), (writer, "write"), (manager, "manage")):
        granted = team.call("PUT", f"/v1/grants/grant-b/{person.name}", own_token, json={"level": level})
        assert granted.status_code == 200
    reader_token, writer_token, manager_token, outsider_token = (p.token() for p in (reader, writer, manager, outsider))

    for token, expected in ((reader_token, 403), (writer_token, 403), (outsider_token, 404)):
        for who in ("grant-read", "grant-write", "grant-out"):
            raised = team.call("PUT", f"/v1/grants/grant-b/{who}", token, json={"level": "manage"})
            assert raised.status_code == expected
        assert team.call("DELETE", "/v1/grants/grant-b/grant-man", token).status_code == expected
        assert team.call("GET", "/v1/grants/grant-b", token).status_code == expected
        assert team.call("DELETE", "/v1/files/grant-b", token).status_code == expected
    # The Access page's form, with the cookie and its CSRF token.
    form = writer.browser.post("/b/grant-b/access", data={"user": "grant-write", "level": "manage",
                                                          "csrf_token": writer.csrf})
    assert form.status_code == 403
    assert outsider.browser.get("/b/grant-b/access").status_code == 404

    # A manager: grants others, but the owner stays the owner, with no grant to take away.
    assert team.call("PUT", "/v1/grants/grant-b/grant-out", manager_token, json={"level": "manage"}).status_code == 200
    for attempt in (team.call("PUT", "/v1/grants/grant-b/grant-own", manager_token, json={"level": "read"}),
                    team.call("DELETE", "/v1/grants/grant-b/grant-own", manager_token),
                    manager.browser.post("/b/grant-b/access", data={"user": "grant-own", "level": "",
                                                                    "csrf_token": manager.csrf})):
        assert attempt.status_code in (302, 400), attempt.text
    assert team.owner("grant-b") == "grant-own"
    assert team.call("PUT", "/v1/files/grant-b/owner-still.txt", own_token, content=b"x").status_code == 200
    # The manager's power stops at this bucket: the owner's other one does not exist for them.
    assert team.call("PUT", "/v1/grants/grant-own-other/grant-man", manager_token,
                     json={"level": "manage"}).status_code == 404
    # A token confined to another bucket may not touch this one's grants, whatever its person may.
    confined = manager.token("manage", bucket="grant-man-b")
    assert team.call("PUT", "/v1/grants/grant-b/grant-read", confined, json={"level": "manage"}).status_code == 403
    levels = {g["user"]: g["level"] for g in team.api.get("/v1/grants/grant-b").json()["data"]}
    assert levels == {"grant-read": "read", "grant-write": "write", "grant-man": "manage", "grant-out": "manage"}


# --- tokens that would be more than their maker ---------------------------------------------------

def test_a_token_makes_no_token_stronger_or_wider_than_itself(team):
    tim = team.add("mint-tim")
    read, manage = tim.token("read"), tim.token("manage")
    confined = tim.token("write", bucket="mint-b")
    for token, fields in ((read, {"scope": "write"}), (read, {"scope": "manage"}), (manage, {"scope": "admin"}),
                          (confined, {"scope": "manage"}), (confined, {"scope": "write", "bucket": "mint-other"}),
                          (confined, {"scope": "read", "bucket": "mint-b2"})):
        made = team.call("POST", "/v1/tokens", token, json={"name": "child", **fields})
        assert made.status_code == 403, (fields, made.text)
    child = team.call("POST", "/v1/tokens", confined, json={"name": "child", "scope": "read"})
    assert child.status_code == 201 and child.json()["bucket"] == "mint-b"  # confined as its maker is
    child_token = bearer(child.json()["token"])
    assert team.call("PUT", "/v1/files/mint-other/x", child_token, content=b"x").status_code == 403
    # An operator's non-admin token makes no token at all.
    operator_write = team.operator_token("mint-operator-write", "write")
    assert team.call("POST", "/v1/tokens", operator_write, json={"name": "x", "scope": "read"}).status_code == 403


def test_a_token_cannot_outlive_the_token_that_made_it(team):
    tia = team.add("outlive-tia")
    short = team.call("POST", "/v1/tokens", tia.token(), json={"name": "short", "scope": "manage", "expires_in": 600})
    assert short.status_code == 201
    parent = bearer(short.json()["token"])
    child = team.call("POST", "/v1/tokens", parent, json={"name": "long", "scope": "manage"})
    expires_at = short.json()["expires_at"]
    assert child.status_code == 403 or (child.json()["expires_at"] is not None
                                        and child.json()["expires_at"] <= expires_at), child.text


# --- a confined token escaping its bucket ---------------------------------------------------------

def test_a_confined_token_stays_in_its_bucket_whatever_the_body_names(team):
    """Buckets named in bodies and headers: /v1/move and /v1/copy (either side), /v1/shares, the seed
    session, tus Upload-Metadata (and the default bucket when it names none), a tus final upload,
    the OpenAI routes, the web forms that make buckets; and it lists no other bucket."""
    cy = team.add("jail-cy")
    owner_token = cy.token()
    for bucket in ("jail-in", "jail-out"):
        assert team.put(owner_token, bucket, "f.txt", bucket.encode()).status_code == 200
    jailed = cy.token("manage", bucket="jail-in")
    attempts = {
        "move out": ("POST", "/v1/move", {"json": {"bucket": "jail-in", "key": "f.txt", "to_bucket": "jail-out",
                                                   "to_key": "g.txt"}}),
        "move in": ("POST", "/v1/move", {"json": {"bucket": "jail-out", "key": "f.txt", "to_bucket": "jail-in",
                                                  "to_key": "g.txt"}}),
        "copy out": ("POST", "/v1/copy", {"json": {"bucket": "jail-in", "key": "f.txt", "to_bucket": "jail-out",
                                                   "to_key": "g.txt"}}),
        "copy in": ("POST", "/v1/copy", {"json": {"bucket": "jail-out", "key": "f.txt", "to_bucket": "jail-in",
                                                  "to_key": "g.txt"}}),
        "copy folder in": ("POST", "/v1/copy", {"json": {"bucket": "jail-out", "prefix": "", "to_bucket": "jail-in",
                                                         "to_prefix": "stolen/"}}),
        "move to a null bucket": ("POST", "/v1/move", {"json": {"bucket": "jail-in", "key": "f.txt",
                                                                "to_bucket": None, "to_key": "g.txt"}}),
        "share": ("POST", "/v1/shares", {"json": {"bucket": "jail-out", "key": "f.txt"}}),
        "file request": ("POST", "/v1/shares", {"json": {"bucket": "jail-out", "prefix": "", "allow_upload": True}}),
        "seed session": ("POST", "/v1/files", {"json": {"bucket": "jail-out", "key": "s.txt", "size": 1}}),
        "new bucket": ("PUT", "/v1/files/jail-new", {}),
        "whole file": ("PUT", "/v1/files/jail-out/w.txt", {"content": b"x"}),
        "tus": ("POST", "/v1/files", {"headers": {**TUS, "Upload-Length": "1",
                                                  "Upload-Metadata": tus_metadata(bucket="jail-out", filename="t")}}),
        "tus default bucket": ("POST", "/v1/files", {"headers": {**TUS, "Upload-Length": "1",
                                                                 "Upload-Metadata": tus_metadata(filename="t")}}),
        "openai file": ("POST", "/v1/openai/v1/files", {"files": {"file": ("a", b"a")},
                                                        "data": {"purpose": "assistants"}}),
        "openai list": ("GET", "/v1/openai/v1/files", {}),
        "zip": ("GET", "/v1/zip/jail-out", {}),
        "quota": ("GET", "/v1/quotas/jail-out", {}),
        "grants": ("GET", "/v1/grants/jail-out", {}),
    }
    for name, (method, path, options) in attempts.items():
        headers = {**jailed, **options.pop("headers", {})}
        answer = team.call(method, path, headers, **options)
        assert answer.status_code in (400, 403), (name, answer.status_code, answer.text)
    # A tus final upload naming another bucket, over a partial the token made itself.
    partial = team.call("POST", "/v1/files", {**jailed, **TUS, "Upload-Length": "1", "Upload-Concat": "partial"})
    assert partial.status_code == 201, partial.text
    assert team.call("PATCH", partial.headers["Location"], {**jailed, **TUS_PATCH, "Upload-Offset": "0"},
                     content=b"z").status_code == 204
    final = team.call("POST", "/v1/files", {**jailed, **TUS, "Upload-Concat": f"final;{partial.headers['Location']}",
                                            "Upload-Metadata": tus_metadata(bucket="jail-out", filename="cat")})
    assert final.status_code == 403, final.text
    # Lists and the web form to make a bucket.
    assert [b["name"] for b in team.call("GET", "/v1/files", jailed).json()["data"]] == ["jail-in"]
    form = team.call("POST", "/buckets", jailed, data={"name": "jail-web"})
    assert form.status_code in (302, 403)
    assert team.api.get("/v1/files/jail-web").status_code == 404
    assert team.api.get("/v1/files/jail-new").status_code == 404
    assert sorted(team.keys("jail-out")) == ["f.txt"] and sorted(team.keys("jail-in")) == ["f.txt"]


def test_a_confined_admin_token_cannot_manage_people(team):
    boss = team.add("jail-boss", role="admin")
    confined = boss.token("admin", bucket="jail-boss-b")
    assert team.call("GET", "/v1/files/jail-in-anything", confined).status_code == 403  # holds for buckets
    made = team.call("POST", "/v1/users", confined, json={"name": "jail-sneaky", "password": PASSWORD,
                                                          "role": "admin"})
    listed = team.call("GET", "/v1/users", confined)
    password = team.call("PATCH", "/v1/users/jail-boss", confined, json={"password": "taken over phrase"})
    assert (made.status_code, listed.status_code, password.status_code) == (403, 403, 403)


# --- one bucket name, two people --------------------------------------------------------------------

def test_racing_members_for_one_bucket_name_leaves_one_owner(team):
    """Two members upload into the same new name at once, a few times: one owns it, the other is
    refused (404) and none of their bytes are in it; afterwards the loser can neither make it again
    (409) nor write there."""
    ann, bob = team.people("race-ann", "race-bob")
    tokens = {"race-ann": ann.token("write"), "race-bob": bob.token("write")}
    for round_ in range(4):
        bucket = f"race-b{round_}"
        barrier = threading.Barrier(2)

        def upload(who: str, bucket: str = bucket, barrier: threading.Barrier = barrier) -> tuple[str, int]:
            barrier.wait(timeout=30)
            return who, team.put(tokens[who], bucket, f"{who}.txt", who.encode()).status_code

        with ThreadPoolExecutor(2) as pool:
            answers = dict(future.result() for future in [pool.submit(upload, who) for who in tokens])
        owner = team.owner(bucket)
        loser = next(who for who in tokens if who != owner)
        assert answers == {owner: 200, loser: 404}, (answers, owner)
        assert team.keys(bucket) == [f"{owner}.txt"]
        assert team.call("PUT", f"/v1/files/{bucket}", tokens[loser]).status_code == 404  # another's: not theirs
        assert team.put(tokens[loser], bucket, "late.txt").status_code == 404
        assert team.call("POST", "/v1/files", tokens[loser], json={"bucket": bucket, "key": "s", "size": 1}
                         ).status_code == 404
        assert team.owner(bucket) == owner and team.keys(bucket) == [f"{owner}.txt"]


def test_a_name_taken_by_a_members_upload_is_theirs_and_an_admins_later_bucket_is_not(team):
    """A member's session into a new name makes it theirs (an admin's later PUT is 409, not a
    takeover); a member's tus partial made before an admin creates the name cannot be concatenated
    into the admin's bucket."""
    mo = team.add("claim-mo")
    mo_token = mo.token("write")
    session = team.call("POST", "/v1/files", mo_token, json={"bucket": "claim-future", "key": "a", "size": 1})
    assert session.status_code == 201
    assert team.api.put("/v1/files/claim-future").status_code == 409
    assert team.owner("claim-future") == "claim-mo"
    # The other order: the partial has no bucket yet; the admin makes the bucket; the final is refused.
    partial = team.call("POST", "/v1/files", {**mo_token, **TUS, "Upload-Length": "1", "Upload-Concat": "partial"})
    assert team.call("PATCH", partial.headers["Location"], {**mo_token, **TUS_PATCH, "Upload-Offset": "0"},
                     content=b"z").status_code == 204
    assert team.api.put("/v1/files/claim-admins").status_code == 201
    final = team.call("POST", "/v1/files", {**mo_token, **TUS, "Upload-Concat": f"final;{partial.headers['Location']}",
                                            "Upload-Metadata": tus_metadata(bucket="claim-admins", filename="x")})
    assert final.status_code == 404, final.text
    assert team.keys("claim-admins") == []
    # A seed upload too, and through the web form that makes buckets.
    assert team.put(mo_token, "claim-admins", "y").status_code == 404
    form = mo.browser.post("/buckets", data={"name": "claim-admins", "csrf_token": mo.csrf})
    assert form.status_code == 302 and team.owner("claim-admins") is None


def test_openai_files_are_their_makers_alone_even_to_whoever_made_the_bucket_first(team):
    """The only test that touches the OpenAI API on this server (the first to use it makes its bucket).
    Another member's file and upload ids are 404 on every OpenAI route (holds); but a member who made
    the bucket 'openai' before anyone used the OpenAI API reads everyone's files through the files API."""
    mallory, alice = team.people("oai-mallory", "oai-alice")
    mallory_token, alice_token = mallory.token(), alice.token()
    claimed = team.call("PUT", "/v1/files/openai", mallory_token)
    file = team.call("POST", "/v1/openai/v1/files", alice_token, files={"file": ("secret.txt", b"alice's secret")},
                     data={"purpose": "assistants"})
    assert file.status_code == 200, file.text
    file = file.json()
    for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
        assert team.call(method, f"/v1/openai/v1/files/{file['id']}{path}", mallory_token).status_code == 404
    assert file["id"] not in [f["id"] for f in team.call("GET", "/v1/openai/v1/files", mallory_token).json()["data"]]
    upload = team.call("POST", "/v1/openai/v1/uploads", alice_token, json={
        "filename": "u.txt", "purpose": "assistants", "bytes": 3, "mime_type": "text/plain"}).json()
    assert team.call("POST", f"/v1/openai/v1/uploads/{upload['id']}/parts", mallory_token,
                     files={"data": ("blob", b"bad")}).status_code == 404
    assert team.call("POST", f"/v1/openai/v1/uploads/{upload['id']}/complete", mallory_token,
                     json={"part_ids": []}).status_code == 404
    assert team.call("POST", f"/v1/openai/v1/uploads/{upload['id']}/cancel", mallory_token).status_code == 404
    part = team.call("POST", f"/v1/openai/v1/uploads/{upload['id']}/parts", alice_token, files={"data": ("b", b"abc")})
    assert part.status_code == 200, part.text
    assert team.call("GET", f"/v1/openai/v1/files/{file['id']}/content", alice_token).content == b"alice's secret"
    # The files API: the bucket must be nobody's, whoever asked for the name first.
    listed = team.call("GET", "/v1/files/openai", mallory_token)
    stolen = team.call("GET", f"/v1/content/openai/{file['id']}/secret.txt", mallory_token)
    assert (listed.status_code, stolen.status_code) == (404, 404), (claimed.status_code, stolen.content)
    assert team.owner("openai") is None


# --- an upload session outliving its maker's access -------------------------------------------------

def test_a_removed_grant_stops_the_uploads_it_allowed(team):
    own, guest = team.people("ungrant-own", "ungrant-guest")
    own_token, guest_token = own.token(), guest.token("write")
    assert team.put(own_token, "ungrant-b", "report.txt", b"original").status_code == 200
    assert team.call("PUT", "/v1/grants/ungrant-b/ungrant-guest", own_token, json={"level": "write"}).status_code == 200
    seed = team.call("POST", "/v1/files", guest_token, json={"bucket": "ungrant-b", "key": "report.txt", "size": 8})
    tus = team.call("POST", "/v1/files", {**guest_token, **TUS, "Upload-Length": "3",
                                          "Upload-Metadata": tus_metadata(bucket="ungrant-b", filename="tus.txt")})
    assert seed.status_code == 201 and tus.status_code == 201
    assert team.call("DELETE", "/v1/grants/ungrant-b/ungrant-guest", own_token).status_code == 204
    assert team.put(guest_token, "ungrant-b", "new.txt").status_code == 404  # new writes: refused
    replaced = team.call("POST", seed.json()["url"], {**guest_token, "Upload-Offset": "0"}, content=b"defaced!")
    patched = team.call("PATCH", tus.headers["Location"], {**guest_token, **TUS_PATCH, "Upload-Offset": "0"},
                        content=b"abc")
    content = team.call("GET", "/v1/content/ungrant-b/report.txt", own_token).content
    assert (content, sorted(team.keys("ungrant-b"))) == (b"original", ["report.txt"]), (replaced.status_code,
                                                                                        patched.status_code)


# --- the audit log ----------------------------------------------------------------------------------

def _audit_buckets(team: Team, headers: dict, **params) -> set:
    answer = team.call("GET", "/v1/audit", headers, params=params)
    assert answer.status_code == 200, answer.text
    return {entry["bucket"] for entry in answer.json()["data"]}


def test_audit_filters_and_cursors_do_not_widen_what_a_manager_reads(team):
    """A manager of one bucket reads that bucket's entries and no other's, whatever the filters say
    (user, bucket, action, family, time, a cursor from far ahead); sign-ins and people changes (no
    bucket) are the admins'. Members who manage nothing, and read-scoped tokens, read nothing on the
    Activity page."""
    alice, bob, nick = team.people("audit-alice", "audit-bob", "audit-nick")
    alice_token, bob_token, nick_token = alice.token(), bob.token(), nick.token()
    assert team.put(alice_token, "audit-alice-b", "secret-plan.txt").status_code == 200
    assert team.put(bob_token, "audit-bob-b", "mine.txt").status_code == 200
    shared = team.call("POST", "/v1/shares", alice_token, json={"bucket": "audit-alice-b", "prefix": ""})
    assert shared.status_code == 201
    filters = [{}, {"user": "audit-alice"}, {"bucket": "audit-alice-b"}, {"action": "upload"}, {"action": "share"},
               {"action": "signin"}, {"action": "user"}, {"cursor": "2147483647"}, {"since": "0"},
               {"user": "user:1"}, {"limit": "1000"}, {"bucket": "audit-alice-b", "user": "audit-alice",
                                                        "cursor": "2147483647", "since": "0"}]
    for params in filters:
        assert _audit_buckets(team, bob_token, **params) <= {"audit-bob-b"}, params
        assert _audit_buckets(team, nick_token, **params) == set(), params
    assert "audit-alice-b" in _audit_buckets(team, alice_token, bucket="audit-alice-b")
    page = bob.browser.get("/activity", params={"user": "audit-alice", "bucket": "audit-alice-b"})
    assert page.status_code == 200 and "secret-plan" not in page.text
    # A token confined to a bucket its person manages reads that bucket only.
    confined = bob.token("manage", bucket="audit-bob-b")
    assert _audit_buckets(team, confined) == {"audit-bob-b"}
    assert _audit_buckets(team, confined, bucket="audit-alice-b") == set()
    # A member who manages nothing cannot even make a token confined to someone else's bucket.
    spy = nick.browser.post("/v1/tokens", headers={"X-CSRF-Token": nick.csrf},
                            json={"name": "spy", "scope": "manage", "bucket": "audit-alice-b"})
    assert spy.status_code == 404, spy.text


def test_an_audit_cursor_from_far_ahead_is_a_4xx_or_an_empty_page(team):
    """The cursor is an entry id (a 32-bit integer column): a longer one is refused, not a 500. Both
    the API and the Activity page."""
    answers = [team.api.get("/v1/audit", params={"cursor": cursor}).status_code
               for cursor in ("2147483648", "999999999999999999")]
    answers += [team.api.get("/activity", params={"cursor": "999999999999999999"}).status_code]
    assert all(status < 500 for status in answers), answers


def test_a_token_confined_to_someone_elses_bucket_reads_none_of_its_activity(team):
    alice, mallory = team.people("spy-alice", "spy-mallory")
    assert team.put(alice.token(), "spy-alice-b", "secret-plan.txt").status_code == 200
    made = mallory.browser.post("/v1/tokens", headers={"X-CSRF-Token": mallory.csrf},
                                json={"name": "spy", "scope": "manage", "bucket": "spy-alice-b"})
    if made.status_code != 201:
        return  # refused at once: the defence holds
    spy = bearer(made.json()["token"])
    assert team.call("GET", "/v1/files/spy-alice-b", spy).status_code == 404  # it cannot read the bucket...
    assert _audit_buckets(team, spy) == set()  # ...nor its history


def test_an_admins_read_token_does_not_read_the_whole_audit_log(team):
    chief = team.add("audit-chief", role="admin")
    read = chief.token("read")
    assert team.put(team.api.headers, "audit-chief-other", "x.txt").status_code == 200
    page = team.call("GET", "/activity", read)
    assert page.status_code == 200 and "audit-chief-other" not in page.text  # the page holds
    assert _audit_buckets(team, read) == set()


def test_a_bucket_made_again_under_an_old_name_shows_none_of_the_old_ones_activity(team):
    carol = team.add("reuse-carol")
    assert team.put(team.api.headers, "reuse-b", "salaries-2026.xlsx").status_code == 200
    assert team.api.delete("/v1/files/reuse-b/salaries-2026.xlsx").status_code == 200
    assert team.api.delete("/v1/files/reuse-b").status_code == 204
    carol_token = carol.token()
    assert team.call("PUT", "/v1/files/reuse-b", carol_token).status_code == 201
    keys = {entry["key"] for entry in team.call("GET", "/v1/audit", carol_token).json()["data"]}
    assert "salaries-2026.xlsx" not in keys


# --- dead credentials, through every path -----------------------------------------------------------

def _tus_session(team: Team, headers: dict, bucket: str, key: str, size: int = 4) -> str:
    made = team.call("POST", "/v1/files", {**headers, **TUS, "Upload-Length": str(size),
                                           "Upload-Metadata": tus_metadata(bucket=bucket, filename=key)})
    assert made.status_code == 201, made.text
    return made.headers["Location"]


def test_revoked_expired_and_disabled_credentials_stop_everywhere(team):
    """A revoked token, an expired one and a disabled person's token, cookie and share link: the API,
    the pages, and the next tus PATCH of a session made before are all refused; what was durable
    stays. Enabling the person again brings their tokens and links back, not their web sessions."""
    dee = team.add("dead-dee")
    owner = dee.token()
    assert team.put(owner, "dead-b", "f.txt", b"hello").status_code == 200

    # Revoked.
    revocable = dee.token("write", name="dead-revocable")
    url = _tus_session(team, revocable, "dead-b", "r.bin")
    assert team.call("PATCH", url, {**revocable, **TUS_PATCH, "Upload-Offset": "0"}, content=b"ab").status_code == 204
    token_id = next(t["id"] for t in dee.browser.get("/v1/tokens").json()["data"] if t["name"] == "dead-revocable")
    revoked = dee.browser.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": dee.csrf})
    assert revoked.status_code == 302 and team.token_state("dead-revocable") == "revoked"
    assert team.call("PATCH", url, {**revocable, **TUS_PATCH, "Upload-Offset": "2"}, content=b"cd").status_code == 401
    assert team.call("GET", "/", revocable).status_code in (302, 401)  # a page: sign in
    assert team.call("GET", "/v1/files/dead-b", revocable).status_code == 401
    assert team.call("POST", "/v1/tokens", revocable, json={"name": "heir", "scope": "read"}).status_code == 401

    # Expired (2 s from now: made, used, then waited for).
    made = dee.browser.post("/v1/tokens", headers={"X-CSRF-Token": dee.csrf},
                            json={"name": "brief", "scope": "write", "expires_in": 2})
    brief = bearer(made.json()["token"])
    url = _tus_session(team, brief, "dead-b", "e.bin")
    deadline = time.monotonic() + 15
    while team.call("GET", "/v1/account", brief).status_code == 200:
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.2)  # waiting for the clock to pass the expiry (bounded by the deadline)
    assert team.call("PATCH", url, {**brief, **TUS_PATCH, "Upload-Offset": "0"}, content=b"abcd").status_code == 401
    assert team.call("GET", "/v1/files/dead-b", brief).status_code == 401

    # Disabled: cookie, token, share link, an upload under way.
    keep = dee.token("write")
    url = _tus_session(team, keep, "dead-b", "d.bin")
    link = team.call("POST", "/v1/shares", owner, json={"bucket": "dead-b", "key": "f.txt"}).json()["url"]
    assert team.call("GET", f"{link}/f/f.txt").content == b"hello"
    assert team.api.patch("/v1/users/dead-dee", json={"disabled": True}).status_code == 200
    assert dee.browser.get("/v1/account").status_code == 401
    assert dee.browser.get("/account").status_code == 302
    assert dee.browser.post("/v1/tokens", headers={"X-CSRF-Token": dee.csrf},
                            json={"name": "x", "scope": "read"}).status_code == 401
    assert team.call("GET", "/v1/account", keep).status_code == 401
    assert team.call("PATCH", url, {**keep, **TUS_PATCH, "Upload-Offset": "0"}, content=b"abcd").status_code == 401
    assert team.call("GET", f"{link}/f/f.txt").status_code == 410
    with team.client(address="127.0.0.4") as anonymous:  # a failed sign-in: counted for its own address
        csrf = anonymous.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        refused = anonymous.post("/login", data={"username": "dead-dee", "password": PASSWORD, "csrf_token": csrf})
        assert refused.status_code in (401, 403) and anonymous.get("/v1/account").status_code == 401
    assert team.api.patch("/v1/users/dead-dee", json={"disabled": False}).status_code == 200
    assert dee.browser.get("/v1/account").status_code == 401  # the signed-out browser stays signed out
    assert team.call("GET", "/v1/account", keep).status_code == 200
    assert team.call("HEAD", url, {**keep, **TUS}).headers["Upload-Offset"] == "0"
    assert team.call("GET", f"{link}/f/f.txt").content == b"hello"
    assert team.keys("dead-b") == ["f.txt"]


def test_password_changes_and_sign_out_everywhere_end_sessions_as_promised(team):
    pat = team.add("pw-pat")
    first, second = pat.browser, team.sign_in("pw-pat")
    sessions = first.get("/v1/account/sessions").json()["data"]
    assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
    # Their own change, on My account: the other browser is signed out, this one stays.
    changed = first.post("/account/password", data={"csrf_token": first.csrf, "current_password": PASSWORD,
                                                    "new_password": "second pass phrase",
                                                    "repeat_password": "second pass phrase"})
    assert changed.status_code == 302
    assert first.get("/v1/account").status_code == 200 and second.get("/v1/account").status_code == 401
    # Their own change by the API with a token: every browser is signed out.
    third = team.sign_in("pw-pat", "second pass phrase")
    token = pat.token("write")  # (a read-only token changes nothing, its person's password included)
    changed = team.call("POST", "/v1/account/password", token, json={"current_password": "second pass phrase",
                                                                      "new_password": "third pass phrase"})
    assert changed.status_code == 204
    assert first.get("/v1/account").status_code == 401 and third.get("/v1/account").status_code == 401
    # An admin's new password: every browser is signed out.
    fourth = team.sign_in("pw-pat", "third pass phrase")
    assert team.api.patch("/v1/users/pw-pat", json={"password": "fourth pass phrase"}).status_code == 200
    assert fourth.get("/v1/account").status_code == 401
    # Sign out everywhere, by the API with the cookie (and its CSRF token): this browser too, and a copied cookie.
    sixth, seventh = team.sign_in("pw-pat", "fourth pass phrase"), team.sign_in("pw-pat", "fourth pass phrase")
    copy = team.client()
    copy.cookies = httpx.Cookies(sixth.cookies)
    assert copy.get("/v1/account").status_code == 200
    ended = sixth.delete("/v1/account/sessions", headers={"X-CSRF-Token": sixth.csrf})
    assert ended.status_code == 200 and ended.json()["ended"] == 2
    assert [b.get("/v1/account").status_code for b in (sixth, seventh, copy)] == [401, 401, 401]
    # Sign out here: a copy of this cookie dies with it.
    eighth = team.sign_in("pw-pat", "fourth pass phrase")
    copy.cookies = httpx.Cookies(eighth.cookies)
    assert eighth.post("/logout", data={"csrf_token": eighth.csrf}).status_code == 302
    assert copy.get("/v1/account").status_code == 401
    # The old passwords are gone; tokens are not passwords and keep working.
    assert team.call("GET", "/v1/account", token).status_code == 200
    kinds = [entry["detail"]["by_self"] for entry in team.api.get("/v1/audit", params={
        "action": "user.password"}).json()["data"] if entry["detail"]["user"] == "pw-pat"]
    assert kinds == [False, True, True]


def test_a_member_session_cannot_sign_others_out_or_list_their_sessions(team):
    """Sessions are one's own: the ids listed name nothing another person can act on."""
    una, vic = team.people("sess-una", "sess-vic")
    vic_sessions = vic.browser.get("/v1/account/sessions").json()["data"]
    assert len(vic_sessions) == 1
    una_sessions = una.browser.get("/v1/account/sessions").json()["data"]
    assert {s["id"] for s in una_sessions}.isdisjoint({s["id"] for s in vic_sessions})
    ended = una.browser.delete("/v1/account/sessions", headers={"X-CSRF-Token": una.csrf})
    assert ended.json()["ended"] == 1
    assert vic.browser.get("/v1/account").status_code == 200
    # An operator's token is nobody: it has no sessions to list or end.
    operator = team.operator_token("sess-operator", "write")
    assert team.call("GET", "/v1/account/sessions", operator).status_code == 403
    assert team.call("DELETE", "/v1/account/sessions", operator).status_code == 403
    assert vic.browser.get("/v1/account").status_code == 200


def test_an_operators_read_token_cannot_revoke_the_operators_admin_token(team):
    victim = team.operator_token("ops-victim-admin", "admin")
    dashboard = team.operator_token("ops-dashboard", "read")
    victim_id = next(t["id"] for t in team.api.get("/v1/tokens").json()["data"] if t["name"] == "ops-victim-admin")
    listed = team.call("GET", "/v1/tokens", dashboard).json()["data"]
    revoked = team.call("DELETE", f"/v1/tokens/{victim_id}", dashboard)
    assert team.call("GET", "/v1/users", victim).status_code == 200, revoked.text
    assert revoked.status_code in (403, 404)
    assert "ops-victim-admin" not in [t["name"] for t in listed]


def test_a_read_token_cannot_revoke_its_persons_stronger_tokens(team):
    ria = team.add("sibling-ria")
    strong = ria.token("manage", name="sibling-strong")
    weak = ria.token("read", name="sibling-weak", bucket="sibling-b")
    strong_id = next(t["id"] for t in ria.browser.get("/v1/tokens").json()["data"] if t["name"] == "sibling-strong")
    revoked = team.call("DELETE", f"/v1/tokens/{strong_id}", weak)
    signed_out = team.call("DELETE", "/v1/account/sessions", weak)
    assert team.call("GET", "/v1/account", strong).status_code == 200, (revoked.status_code, signed_out.status_code)
    assert ria.browser.get("/v1/account").status_code == 200, signed_out.text


# --- cross-site requests riding a cookie --------------------------------------------------------------

def test_cross_site_requests_with_a_signed_in_cookie_change_nothing(team):
    """Every new form and every API write made with the cookie, sent as another site's page would
    (Origin of another site, or `null`, or Sec-Fetch-Site cross-site / same-site), with the right
    CSRF token even: 403, and nothing changed. Without the CSRF token, from our own origin: 403 too."""
    root, _ = team.people("xs-root", "xs-victim")
    assert team.api.patch("/v1/users/xs-root", json={"role": "admin"}).status_code == 200
    root_token = root.token("admin")
    assert team.put(root_token, "xs-b", "f.txt").status_code == 200
    victim_token_id = next(t["id"] for t in team.api.get("/v1/tokens").json()["data"] if t["user"] == "xs-root")
    forms = [
        ("POST", "/account/password", {"data": {"current_password": PASSWORD, "new_password": "hijacked phrase!",
                                                "repeat_password": "hijacked phrase!"}}),
        ("POST", "/account/tokens", {"data": {"name": "xs-stolen", "scope": "admin"}}),
        ("POST", f"/account/tokens/{victim_token_id}/revoke", {"data": {}}),
        ("POST", "/account/sign-out-everywhere", {"data": {}}),
        ("POST", "/people", {"data": {"name": "xs-planted", "password": PASSWORD, "role": "admin"}}),
        ("POST", "/people/xs-victim/role", {"data": {"role": "admin"}}),
        ("POST", "/people/xs-victim/disabled", {"data": {"disabled": "1"}}),
        ("POST", "/people/xs-victim/password", {"data": {"new_password": "hijacked phrase!",
                                                         "repeat_password": "hijacked phrase!"}}),
        ("POST", "/people/xs-victim/delete", {"data": {}}),
        ("POST", f"/tokens/{victim_token_id}/revoke", {"data": {}}),
        ("POST", "/b/xs-b/access", {"data": {"user": "xs-victim", "level": "manage"}}),
        ("POST", "/logout", {"data": {}}),
        ("POST", "/v1/tokens", {"json": {"name": "xs-stolen", "scope": "admin"}}),
        ("POST", "/v1/users", {"json": {"name": "xs-planted", "password": PASSWORD, "role": "admin"}}),
        ("PATCH", "/v1/users/xs-victim", {"json": {"role": "admin"}}),
        ("DELETE", "/v1/users/xs-victim", {}),
        ("PUT", "/v1/grants/xs-b/xs-victim", {"json": {"level": "manage"}}),
        ("DELETE", f"/v1/tokens/{victim_token_id}", {}),
        ("DELETE", "/v1/account/sessions", {}),
        ("POST", "/v1/account/password", {"json": {"current_password": PASSWORD,
                                                   "new_password": "hijacked phrase!"}}),
    ]
    hostile = [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
               {"Sec-Fetch-Site": "same-site"}, {"Origin": f"{team.url}.evil.example"}]
    browser = root.browser
    for method, path, options in forms:
        for headers in hostile:
            sent = {**headers, "X-CSRF-Token": browser.csrf}
            data = {**options["data"], "csrf_token": browser.csrf} if "data" in options else None
            answer = browser.request(method, path, headers=sent, data=data, json=options.get("json"))
            refused_as_cross_site = error_code(answer) == "cross_site" or "change anything here" in answer.text
            assert answer.status_code == 403 and refused_as_cross_site, (method, path, headers, answer.status_code)
        # Same origin, but no CSRF token (or an empty one): refused too.
        for token in (None, ""):
            sent = {"Origin": team.url} if token is None else {"Origin": team.url, "X-CSRF-Token": token}
            data = {**options["data"], **({"csrf_token": token} if token is not None else {})} \
                if "data" in options else None
            answer = browser.request(method, path, headers=sent, data=data, json=options.get("json"))
            assert answer.status_code == 403, (method, path, token, answer.status_code, answer.text[:200])
    assert browser.get("/v1/account").status_code == 200  # still signed in
    users = {u["name"]: u for u in team.api.get("/v1/users").json()["data"]}
    assert "xs-planted" not in users and users["xs-victim"]["role"] == "member" and not users["xs-victim"]["disabled"]
    assert team.owner("xs-b") == "xs-root" and team.api.get("/v1/grants/xs-b").json()["data"] == []
    tokens = team.api.get("/v1/tokens").json()["data"]
    assert "xs-stolen" not in [t["name"] for t in tokens]
    assert next(t for t in tokens if t["id"] == victim_token_id)["state"] == "active"
    team.sign_in("xs-victim").close()  # the victim's password is still theirs
    team.sign_in("xs-root").close()


# --- /metrics -----------------------------------------------------------------------------------------

def test_metrics_behind_a_proxy_need_an_admins_credential(team):
    """FILES_METRICS=admin (every request comes from loopback behind a proxy): no loopback pass, no
    forwarded-for trick; a member's cookie or token, a non-admin scope of an admin, a confined admin
    token, an operator's write token and a revoked admin token are refused; an admin's cookie or
    token reads it."""
    member, chief = team.add("met-member"), team.add("met-chief", role="admin")
    revoked_admin = team.operator_token("met-revoked", "admin")
    revoked_id = next(t["id"] for t in team.api.get("/v1/tokens").json()["data"] if t["name"] == "met-revoked")
    assert team.api.delete(f"/v1/tokens/{revoked_id}").status_code == 200
    refused = {
        "anonymous": {},
        "forwarded": {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1"},
        "member token": member.token("manage"),
        "admin's read token": chief.token("read"),
        "confined admin": chief.token("admin", bucket="met-b"),
        "operator write": team.operator_token("met-write", "write"),
        "revoked admin": revoked_admin,
        "not a bearer": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    }
    for name, headers in refused.items():
        answer = team.call("GET", "/metrics", headers)
        assert answer.status_code in (401, 403), (name, answer.status_code)
        assert "files_http_requests_total" not in answer.text
    assert member.browser.get("/metrics").status_code == 403
    assert chief.browser.get("/metrics").status_code == 200
    assert team.call("GET", "/metrics", chief.token("admin")).status_code == 200
    assert "files_http_requests_total" in team.api.get("/metrics").text


# --- hostile bodies -----------------------------------------------------------------------------------

def test_hostile_bodies_on_the_people_routes_are_clear_4xx(team):
    """Huge, deeply nested, wrongly typed and over-long bodies on /v1/users, /v1/tokens, /v1/grants and
    /v1/account/password: 4xx in the one error shape, nothing made, the server unharmed."""
    hal = team.add("body-hal")
    hal_token = hal.token()
    assert team.put(hal_token, "body-b", "f.txt").status_code == 200
    admin = team.api.headers
    routes = [("POST", "/v1/users", admin), ("PATCH", "/v1/users/body-hal", admin),
              ("POST", "/v1/tokens", hal_token), ("PUT", "/v1/grants/body-b/body-hal", hal_token),
              ("POST", "/v1/account/password", hal_token)]
    huge = json.dumps({"name": "x" * (100 * 1024)}).encode()  # past the 64 KiB cap
    deep = b"[" * 30_000 + b"]" * 30_000  # within the 64 KiB cap: nested past Python's stack
    for method, path, headers in routes:
        for body in (huge, deep, b"{", b"[]", b"null", b'"text"', b"\xff\xfe", b"{\"a\": NaN}"):
            answer = team.call(method, path, headers, content=body)
            assert 400 <= answer.status_code < 500 and error_code(answer), (method, path, body[:20], answer.text)
    wrong = [
        ("POST", "/v1/users", admin, {"name": 1, "password": PASSWORD}),
        ("POST", "/v1/users", admin, {"name": "body-x", "password": ["a"] * 20}),
        ("POST", "/v1/users", admin, {"name": "body-x", "password": PASSWORD, "role": {"admin": True}}),
        ("POST", "/v1/users", admin, {"name": "body-x", "password": PASSWORD, "role": "root"}),
        ("POST", "/v1/users", admin, {"name": "x" * 101, "password": PASSWORD}),
        ("POST", "/v1/users", admin, {"name": "../etc", "password": PASSWORD}),
        ("POST", "/v1/users", admin, {"name": "bodyé", "password": PASSWORD}),
        ("POST", "/v1/users", admin, {"name": "body-x", "password": "short"}),
        ("POST", "/v1/users", admin, {"name": "body-x", "password": "password12"}),
        ("PATCH", "/v1/users/body-hal", admin, {"disabled": "yes"}),
        ("PATCH", "/v1/users/body-hal", admin, {"role": ["admin"]}),
        ("PATCH", "/v1/users/body-hal", admin, {"is_admin": True}),
        ("POST", "/v1/tokens", hal_token, {"name": ["x"], "scope": "read"}),
        ("POST", "/v1/tokens", hal_token, {"name": "   ", "scope": "read"}),
        ("POST", "/v1/tokens", hal_token, {"name": "x", "scope": ["admin"]}),
        ("POST", "/v1/tokens", hal_token, {"name": "x", "scope": "root"}),
        ("POST", "/v1/tokens", hal_token, {"name": "x", "scope": "read", "bucket": "../body-b"}),
        ("POST", "/v1/tokens", hal_token, {"name": "x", "scope": "read", "bucket": 7}),
        ("POST", "/v1/tokens", hal_token, {"name": "x", "scope": "read", "expires_in": 1.5}),
        ("POST", "/v1/tokens", hal_token, {"name": "x", "scope": "read", "expires_in": True}),
        ("POST", "/v1/tokens", hal_token, {"name": "x", "scope": "read", "expires_in": -5}),
        ("POST", "/v1/tokens", hal_token, {"name": "x", "scope": "read", "expires_in": 10 ** 40}),
        ("POST", "/v1/tokens", hal_token, {"name": "x", "scope": "read", "expires_at": 1}),
        ("POST", "/v1/tokens", hal_token, {"name": "x", "scope": "read", "expires_in": 60, "expires_at": 10 ** 10}),
        ("PUT", "/v1/grants/body-b/body-hal", hal_token, {"level": "owner"}),
        ("PUT", "/v1/grants/body-b/body-hal", hal_token, {"level": None}),
        ("PUT", "/v1/grants/body-b/body-hal", hal_token, {"level": 3}),
        ("PUT", "/v1/grants/body-b/nobody-here", hal_token, {"level": "read"}),
        ("POST", "/v1/account/password", hal_token, {"current_password": 1, "new_password": "x"}),
        ("POST", "/v1/account/password", hal_token, {"current_password": PASSWORD, "new_password": None}),
        ("POST", "/v1/account/password", hal_token, {"current_password": PASSWORD, "new_password": "short"}),
    ]
    for method, path, headers, body in wrong:
        answer = team.call(method, path, headers, json=body)
        assert 400 <= answer.status_code < 500 and error_code(answer), (method, path, body, answer.text)
    # A token's name is cut to 100 characters; markup in it (and in a browser's name) stays inert text.
    long = team.call("POST", "/v1/tokens", hal_token, json={"name": "n" * 5000, "scope": "read"})
    assert long.status_code == 201 and long.json()["name"] == "n" * 100
    markup = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    assert team.call("POST", "/v1/tokens", hal_token, json={"name": markup, "scope": "read"}).status_code == 201
    with team.client({"User-Agent": markup}) as odd:
        csrf = odd.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        assert odd.post("/login", data={"username": "body-hal", "password": PASSWORD,
                                        "csrf_token": csrf}).status_code == 302
        page = odd.get("/account").text
        assert markup not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    tokens_page = team.api.get("/tokens").text
    assert markup not in tokens_page and "&lt;script&gt;alert(1)&lt;/script&gt;" in tokens_page
    users = [u["name"] for u in team.api.get("/v1/users").json()["data"]]
    assert "body-x" not in users and team.api.get("/v1/users/body-hal").json()["role"] == "member"
    assert team.call("GET", "/healthz").status_code == 200
    assert hal.browser.get("/account").status_code == 200 and markup not in hal.browser.get("/account").text


def test_lone_surrogates_and_nul_in_people_bodies_are_4xx(team):
    ivy = team.add("sur-ivy")
    ivy_token = ivy.token()
    lone = '"' + "\\ud800" * 12 + '"'  # JSON text: twelve escaped lone surrogates
    bodies = [
        ("POST", "/v1/users", team.api.headers, f'{{"name": "sur-x", "password": {lone}}}'),
        ("PATCH", "/v1/users/sur-ivy", team.api.headers, f'{{"password": {lone}}}'),
        ("POST", "/v1/account/password", ivy_token, f'{{"current_password": {lone}, "new_password": "{PASSWORD}"}}'),
        ("POST", "/v1/account/password", ivy_token, f'{{"current_password": "{PASSWORD}", "new_password": {lone}}}'),
        ("POST", "/v1/tokens", ivy_token, '{"name": "a\\ud800b", "scope": "read"}'),
        ("POST", "/v1/tokens", ivy_token, '{"name": "a\\u0000b", "scope": "read"}'),
    ]
    statuses = [team.call(method, path, headers, content=body.encode()).status_code
                for method, path, headers, body in bodies]
    assert all(status < 500 for status in statuses), statuses


def test_a_refused_user_patch_changes_nothing(team):
    jo = team.add("patch-jo")
    refused = team.api.patch("/v1/users/patch-jo", json={"password": "changed pass phrase", "disabled": "yes"})
    assert refused.status_code == 400
    assert jo.browser.get("/v1/account").status_code == 200, "the refused request signed the person out"


# --- floods, slow clients, throttles -------------------------------------------------------------------

def test_parallel_wrong_passwords_stay_within_the_sign_in_limit(team):
    team.add("flood-zed")
    attempts = 10

    def attempt(number: int, barrier: threading.Barrier) -> int:
        with team.client(address="127.0.0.2") as browser:
            csrf = browser.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
            barrier.wait(timeout=30)
            return browser.post("/login", data={"username": "flood-zed", "password": f"wrong guess {number}",
                                                "csrf_token": csrf}).status_code

    barrier = threading.Barrier(attempts)
    with ThreadPoolExecutor(attempts) as pool:
        answers = sorted(pool.map(lambda number: attempt(number, barrier), range(attempts)))
    assert set(answers) <= {401, 429}, answers
    with team.client(address="127.0.0.2") as browser:  # the limit holds afterwards, right password or not
        csrf = browser.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        assert browser.post("/login", data={"username": "flood-zed", "password": PASSWORD,
                                            "csrf_token": csrf}).status_code == 429
    assert answers.count(401) <= 5, answers


def test_guessing_the_current_password_is_throttled_like_signing_in(team):
    kim = team.add("guess-kim")
    assert team.call("POST", "/v1/account/password", kim.token("read"), json={
        "current_password": PASSWORD, "new_password": "a fresh pass phrase"}).status_code == 403  # read-only
    writer = kim.token("write")
    with team.client(writer, address="127.0.0.3") as http:
        answers = [http.post("/v1/account/password", json={"current_password": f"guess number {n}",
                                                           "new_password": "a fresh pass phrase"}).status_code
                   for n in range(8)]
    assert answers[:5] == [403] * 5, answers
    assert 429 in answers, answers


def test_floods_and_stalled_bodies_on_the_people_routes_do_not_stall_the_service(team):
    """32 connections that send half a JSON body to /v1/users and stall, and 48 parallel calls to the
    people routes: every answer is < 500, and a normal request is answered within seconds throughout."""
    lee = team.add("flood-lee")
    lee_token = lee.token()
    with ExitStack() as stack:
        for _ in range(32):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", team.server.port), timeout=10))
            sock.sendall(b"POST /v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                         + team.admin_token.encode() + b"\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"name\": \"flood-")
        started = time.monotonic()
        assert team.call("GET", "/healthz").status_code == 200
        assert team.call("GET", "/v1/account", lee_token).status_code == 200
        assert time.monotonic() - started < 5  # (a stalled body holds its thread for FILES_CLIENT_TIMEOUT: 60 s)

        def one(number: int) -> int:
            method, path, body = [("GET", "/v1/audit", None), ("GET", "/v1/tokens", None),
                                  ("POST", "/v1/tokens", {"name": f"flood-{number}", "scope": "read"}),
                                  ("GET", "/v1/account/sessions", None)][number % 4]
            headers = lee_token if path != "/v1/account/sessions" else {}
            client = lee.browser if path == "/v1/account/sessions" else None
            if client is not None:
                return client.get(path).status_code
            return team.call(method, path, headers, json=body).status_code

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(48)))
        assert all(status < 500 for status in answers), answers
        started = time.monotonic()
        assert team.call("GET", "/v1/account", lee_token).status_code == 200
        assert time.monotonic() - started < 5  # (a stalled body holds its thread for FILES_CLIENT_TIMEOUT: 60 s)
    made = [t for t in team.call("GET", "/v1/tokens", lee_token).json()["data"] if t["name"][6:].isdigit()]
    assert len(made) == 12
    users = {u["name"] for u in team.api.get("/v1/users").json()["data"] if u["name"].startswith("flood-")}
    assert users <= {"flood-lee", "flood-zed"}  # the stalled bodies made nobody
