"""Webhooks through the API and the pages (both configurations): registering (validation, admins
only, the secret shown once), events queued in the transaction of their change, and the deliverer's
rules driven by hand with a fake receiver and clock: signatures, order per bucket, backoff, giving
up, leases between workers. (A real receiver and a real server: tests/e2e/test_hooks.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time

import pytest
from sqlalchemy import select

from files_app.models import AuditEntry, HookDelivery, db, transaction
from files_app.services import audit, webhooks
from files_app.services.acting import Actor, acting_as
from tests.api.test_put import _statements_of
from tests.api.test_team import person
from tests.helpers import assert_error, bearer, make_token

PASSWORD = "correct horse battery"
RECEIVER = "http://127.0.0.1:9/events"


def hook_body(**fields) -> dict:
    return {"data": json.dumps({"url": RECEIVER, "actions": ["*"], **fields}), "content_type": "application/json"}


def json_body(value) -> dict:
    return {"data": json.dumps(value), "content_type": "application/json"}


@pytest.fixture
def admin(runner) -> dict:
    return bearer(make_token(runner, "admin"))


def test_an_admin_registers_lists_changes_and_deletes_a_hook(client, admin):
    made = client.post("/v1/hooks", headers=admin, **hook_body(actions=["upload", "share", "upload"],
                                                                 buckets=["b", "c"]))
    assert made.status_code == 201, made.data
    assert made.headers["Cache-Control"] == "no-store"
    hook = made.get_json()
    assert re.fullmatch(r"[0-9a-f]{64}", hook.pop("secret"))  # made, shown this once
    assert hook["url"] == RECEIVER and hook["actions"] == ["upload", "share"] and hook["buckets"] == ["b", "c"]
    assert hook["enabled"] is True and hook["deliveries"] == {"pending": 0, "failed": 0}
    assert client.get(f"/v1/hooks/{hook['id']}", headers=admin).get_json() == hook
    assert client.get("/v1/hooks", headers=admin).get_json() == {"data": [hook]}
    # A secret of one's own is taken, and never shown again either.
    own = client.post("/v1/hooks", headers=admin, **hook_body(secret="s" * 20)).get_json()
    assert own["secret"] == "s" * 20 and own["buckets"] is None and own["actions"] == ["*"]
    assert all("secret" not in listed for listed in client.get("/v1/hooks", headers=admin).get_json()["data"])
    changed = client.patch(f"/v1/hooks/{hook['id']}", headers=admin,
                           **json_body({"buckets": None, "enabled": False, "actions": ["delete"]}))
    assert changed.status_code == 200, changed.data
    assert (changed.get_json()["buckets"], changed.get_json()["enabled"], changed.get_json()["actions"]) == (
        None, False, ["delete"])
    assert "secret" not in changed.get_json()
    assert client.delete(f"/v1/hooks/{hook['id']}", headers=admin).status_code == 204
    assert_error(client.get(f"/v1/hooks/{hook['id']}", headers=admin), 404, "not_found")
    assert [h["id"] for h in client.get("/v1/hooks", headers=admin).get_json()["data"]] == [own["id"]]
    # Each change is in the activity log, without the secret or the URL (which may carry a token).
    entries = [e for e in client.get("/v1/audit", headers=admin).get_json()["data"] if e["action"].startswith("hook.")]
    assert [e["action"] for e in entries] == ["hook.delete", "hook.update", "hook.create", "hook.create"]
    assert all(e["detail"]["hook"] in (hook["id"], own["id"]) and "s" * 20 not in json.dumps(e) and
               "/events" not in json.dumps(e) for e in entries)


@pytest.mark.parametrize(("fields", "code"), [
    ({"url": "ftp://127.0.0.1/x"}, "invalid_url"),
    ({"url": "file:///etc/passwd"}, "invalid_url"),
    ({"url": "javascript:alert(1)"}, "invalid_url"),
    ({"url": "http://"}, "invalid_url"),
    ({"url": "http://host:99999/"}, "invalid_url"),
    ({"url": "http://host/a b"}, "invalid_url"),
    ({"url": "http://host/" + "x" * 2048}, "invalid_url"),
    ({"url": 7}, "invalid_url"),
    ({"actions": []}, "invalid_actions"),
    ({"actions": "upload"}, "invalid_actions"),
    ({"actions": ["upload", "explode"]}, "invalid_actions"),
    ({"actions": [1]}, "invalid_actions"),
    ({"buckets": []}, "invalid_buckets"),
    ({"buckets": ["no/slashes"]}, "invalid_buckets"),
    ({"buckets": "b"}, "invalid_buckets"),
    ({"secret": "short"}, "invalid_secret"),
    ({"secret": "x" * 15 + "\n"}, "invalid_secret"),
    ({"secret": 12345678901234567}, "invalid_secret"),
    ({"colour": "red"}, "invalid_field"),
])
def test_a_hook_that_cannot_work_is_refused_and_nothing_is_made(client, admin, fields, code):
    assert_error(client.post("/v1/hooks", headers=admin, **hook_body(**fields)), 400, code)
    assert client.get("/v1/hooks", headers=admin).get_json() == {"data": []}


def test_changes_that_cannot_work_are_refused_and_unknown_hooks_are_404(client, admin):
    assert_error(client.post("/v1/hooks", headers=admin, **json_body({"url": RECEIVER})), 400, "invalid_request")
    assert_error(client.post("/v1/hooks", headers=admin, data="[1]", content_type="application/json"), 400,
                 "invalid_json")
    hook = client.post("/v1/hooks", headers=admin, **hook_body()).get_json()
    for changes, code in (({"enabled": "yes"}, "invalid_enabled"), ({"url": "gopher://x"}, "invalid_url"),
                          ({"id": 5}, "invalid_field"), ({"actions": ["*", "nope"]}, "invalid_actions")):
        assert_error(client.patch(f"/v1/hooks/{hook['id']}", headers=admin, **json_body(changes)), 400, code)
    del hook["secret"]
    assert client.get(f"/v1/hooks/{hook['id']}", headers=admin).get_json() == hook  # unchanged
    for method, path in (("get", "/v1/hooks/999"), ("patch", "/v1/hooks/999"), ("delete", "/v1/hooks/999"),
                         ("get", "/v1/hooks/999/deliveries")):
        assert_error(getattr(client, method)(path, headers=admin, **json_body({})), 404, "not_found")
    assert_error(client.get(f"/v1/hooks/{hook['id']}/deliveries?state=lost", headers=admin), 400, "invalid_state")
    assert_error(client.get(f"/v1/hooks/{hook['id']}/deliveries?cursor=x", headers=admin), 400, "invalid_cursor")


def test_only_admins_see_or_manage_hooks(app, client, runner, admin):
    hook = client.post("/v1/hooks", headers=admin, **hook_body()).get_json()
    member = person(app, client, admin["Authorization"].split()[1], "ann", scope="manage")
    writer = bearer(make_token(runner, "write"))
    calls = [("get", "/v1/hooks"), ("post", "/v1/hooks"), ("get", f"/v1/hooks/{hook['id']}"),
             ("patch", f"/v1/hooks/{hook['id']}"), ("delete", f"/v1/hooks/{hook['id']}"),
             ("get", f"/v1/hooks/{hook['id']}/deliveries")]
    for method, path in calls:
        for headers in (member, writer):
            assert_error(getattr(client, method)(path, headers=headers, **hook_body(enabled=False)), 403, "forbidden")
        assert_error(getattr(client, method)(path, **hook_body(enabled=False)), 401, "unauthorized")
    assert client.get(f"/v1/hooks/{hook['id']}", headers=admin).get_json()["enabled"] is True


# --- the queue -----------------------------------------------------------------------------------
def queued(hook_id: int | None = None) -> list[tuple[int, str, str, str]]:
    """(hook, bucket, action, key) of each queued delivery, in order."""
    query = (select(HookDelivery.hook_id, HookDelivery.bucket, AuditEntry.action, AuditEntry.key)
             .join(AuditEntry, AuditEntry.id == HookDelivery.audit_id).order_by(HookDelivery.id))
    if hook_id is not None:
        query = query.where(HookDelivery.hook_id == hook_id)
    with transaction():
        return [tuple(row) for row in db.session.execute(query)]


def test_each_event_is_queued_for_the_hooks_that_want_it_in_its_own_transaction(app, client, admin):
    uploads = client.post("/v1/hooks", headers=admin, **hook_body(actions=["upload", "delete"], buckets=["b"]))
    everything = client.post("/v1/hooks", headers=admin, **hook_body(actions=["*"]))
    uploads, everything = uploads.get_json()["id"], everything.get_json()["id"]
    assert client.put("/v1/files/b/one.txt", data=b"1", headers=admin).status_code == 200
    assert client.put("/v1/files/c/two.txt", data=b"2", headers=admin).status_code == 200
    assert client.delete("/v1/files/b/one.txt", headers=admin).status_code == 200
    assert client.post("/v1/users", headers=admin, **json_body({"name": "bo", "password": PASSWORD})).status_code == 201
    with app.app_context():
        assert queued(uploads) == [(uploads, "b", "upload", "one.txt"), (uploads, "b", "delete", "one.txt")]
        assert [(bucket, action) for _, bucket, action, _ in queued(everything)] == [
            ("b", "bucket.create"), ("b", "upload"), ("c", "bucket.create"), ("c", "upload"), ("b", "delete"),
            ("", "user.create")]
        # A change that fails takes its event with it: neither the entry nor its deliveries stay.
        before = queued()
        with pytest.raises(RuntimeError), transaction():
            audit.record("upload", bucket="b", key="never.txt", size=1)
            raise RuntimeError("the change failed")
        assert queued() == before
        assert not db.session.scalar(select(AuditEntry.id).where(AuditEntry.key == "never.txt"))
    # A paused hook gets no new events; deleting a hook takes its queue along.
    client.patch(f"/v1/hooks/{uploads}", headers=admin, **json_body({"enabled": False}))
    client.put("/v1/files/b/three.txt", data=b"3", headers=admin)
    assert client.delete(f"/v1/hooks/{everything}", headers=admin).status_code == 204
    with app.app_context():
        assert queued() == [(uploads, "b", "upload", "one.txt"), (uploads, "b", "delete", "one.txt")]


def test_without_hooks_a_change_costs_no_statement_more_and_with_one_only_its_insert(app, client, admin):
    client.put("/v1/files/b/warm.txt", data=b"w", headers=admin)  # warm: the hooks were read once, at the first change
    reply, statements = _statements_of(app, lambda: client.put("/v1/files/b/p", data=b"y", headers=admin))
    assert reply.status_code == 200
    assert not [statement for statement in statements if "hook" in statement], statements
    client.post("/v1/hooks", headers=admin, **hook_body())
    reply, with_hook = _statements_of(app, lambda: client.put("/v1/files/b/q", data=b"y", headers=admin))
    assert reply.status_code == 200
    assert [statement.split("(")[0].strip() for statement in with_hook if "hook" in statement] == [
        "INSERT INTO hook_deliveries"], with_hook
    assert len(with_hook) == len(statements) + 1


# --- delivery, by hand -----------------------------------------------------------------------------
class FakeReceiver:
    """Answers each POST with the next status for its URL (200 when none is left), and keeps them."""

    def __init__(self):
        self.received: list[tuple[str, dict, bytes]] = []
        self.statuses: dict[str, list[int | Exception]] = {}

    async def send(self, _client, url: str, body: bytes, headers: dict) -> tuple[int | None, str | None]:
        self.received.append((url, headers, body))
        answer = self.statuses.get(url, []).pop(0) if self.statuses.get(url) else 200
        if isinstance(answer, Exception):
            raise answer
        return answer, None

    def events(self, url: str | None = None) -> list[tuple[str, str]]:
        return [(json.loads(body)["bucket"], json.loads(body)["key"]) for to, _, body in self.received
                if url is None or to == url]


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def deliverer(receiver: FakeReceiver, clock: Clock, **settings) -> webhooks.Deliverer:
    return webhooks.Deliverer(webhooks.DeliverySettings(**settings), send=receiver.send, clock=clock)


def change(bucket: str | None, key: str | None, action: str = "upload") -> None:
    with transaction():
        audit.record(action, bucket=bucket, key=key, size=1 if key else None, detail={"n": key})


def states(hook_id: int) -> list[tuple[str, str, int]]:
    return [(d.key, d.state, d.attempts) for d in reversed(webhooks.deliveries(hook_id).deliveries)]


def test_events_go_out_signed_and_carry_the_audit_entry(services):
    hook, secret = webhooks.create_hook("http://127.0.0.1:9/a", ["upload"], None, "k" * 32)
    with acting_as(Actor("user:7", "ada", address="192.0.2.1", user_agent="Firefox")):
        change("b", "x.txt")
    receiver, clock = FakeReceiver(), Clock(time.time() + 1)
    assert deliverer(receiver, clock).run_once() == 1
    [(url, headers, body)] = receiver.received
    assert secret == "k" * 32 and url == "http://127.0.0.1:9/a"
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Files-Signature"] == f"sha256={expected}"
    event = json.loads(body)
    entry = audit.page(audit.AuditFilter(action="upload"), buckets=None).entries[0]
    assert event == {"id": entry.id, "at": entry.at, "action": "upload", "actor": "user:7", "actor_name": "ada",
                     "bucket": "b", "key": "x.txt", "bytes": 1, "detail": {"n": "x.txt"}, "outcome": "ok"}
    assert headers["X-Files-Event"] == str(entry.id) and headers["Content-Type"] == "application/json"
    [delivery] = webhooks.deliveries(hook.id).deliveries
    assert headers["X-Files-Delivery"] == str(delivery.id)
    assert (delivery.state, delivery.attempts, delivery.last_status, delivery.delivered_at) == (
        "delivered", 1, 200, clock.now)
    assert deliverer(receiver, clock).run_once() == 0  # delivered once


def test_a_bucket_waits_for_its_earlier_event_and_failures_back_off_until_given_up(services):
    hook, _ = webhooks.create_hook("http://r/", ["*"], None, None)
    for bucket, key in (("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2")):
        change(bucket, key)
    receiver, clock = FakeReceiver(), Clock(time.time() + 1)
    receiver.statuses["http://r/"] = [500, 200]  # a1 fails, b1 succeeds
    send = deliverer(receiver, clock, backoff=10, backoff_cap=25, retry_for=100)
    assert send.run_once() == 2 and receiver.events() == [("a", "a1"), ("b", "b1")]  # the heads of both buckets
    assert send.run_once() == 1 and receiver.events()[-1] == ("b", "b2")  # a2 waits behind a1
    assert send.run_once() == 0
    assert states(hook.id) == [("a1", "pending", 1), ("a2", "pending", 0), ("b1", "delivered", 1),
                               ("b2", "delivered", 1)]
    [a1] = [d for d in webhooks.deliveries(hook.id, state="pending").deliveries if d.key == "a1"]
    assert a1.last_status == 500 and a1.next_attempt_at == clock.now + 10 and "500" in a1.last_error
    # Doubling, capped: 10 s, 20 s, then 25 s apart; a2 stays behind a1 all along.
    receiver.statuses["http://r/"] = [503, ConnectionRefusedError("refused"), 500, 500, 500]
    for delay, error in ((10, "503"), (20, "ConnectionRefusedError: refused"), (25, "500"), (25, "500")):
        clock.now += delay - 1
        assert send.run_once() == 0
        clock.now += 1
        assert send.run_once() == 1 and receiver.events()[-1] == ("a", "a1")
        assert error in webhooks.deliveries(hook.id, state="pending").deliveries[-1].last_error
    # A day (here 100 s) after its event, a failure is final, and the bucket moves on.
    clock.now += 25
    assert send.run_once() == 1
    assert states(hook.id)[0] == ("a1", "failed", 6)
    assert send.run_once() == 1 and receiver.events()[-1] == ("a", "a2")
    assert webhooks.hook(hook.id).failed == 1 and webhooks.hook(hook.id).pending == 0


def test_a_claim_keeps_other_workers_off_until_its_lease_ends(services):
    hook, _ = webhooks.create_hook("http://r/", ["*"], None, None)
    change("a", "a1")
    receiver, clock = FakeReceiver(), Clock(time.time() + 1)
    first, second = deliverer(receiver, clock, timeout=10), deliverer(receiver, clock, timeout=10)
    [claim] = first.claim()
    assert second.claim() == [] and second.run_once() == 0  # leased: not sent twice at once
    clock.now += 14
    assert second.run_once() == 0
    clock.now += 1  # the lease (timeout + 5 s) is over: the first worker is taken for dead
    assert second.run_once() == 1 and len(receiver.received) == 1
    first.finish([claim], [(500, None)])  # too late: its outcome is not written over the second's
    assert states(hook.id) == [("a1", "delivered", 1)]


def test_paused_and_deleted_hooks_send_nothing_and_gc_prunes_old_deliveries(services):
    paused, _ = webhooks.create_hook("http://paused/", ["upload", "user"], None, None)  # "user": user.*
    kept, _ = webhooks.create_hook("http://kept/", ["upload"], ["a"], None)
    change("a", "a1")
    change(None, None, "user.create")  # no bucket: only the hook of every bucket wants it
    webhooks.update_hook(paused.id, {"enabled": False})
    receiver, clock = FakeReceiver(), Clock(time.time() + 1)
    assert deliverer(receiver, clock).run_once() == 1 and receiver.events() == [("a", "a1")]
    assert webhooks.hook(paused.id).pending == 2
    webhooks.update_hook(paused.id, {"enabled": True})
    assert deliverer(receiver, clock).run_once() == 2  # a bucket's and the bucketless stream, side by side
    assert sorted(receiver.events("http://paused/"), key=str) == [("a", "a1"), (None, None)]
    change("a", "a2")
    webhooks.delete_hook(paused.id)
    assert webhooks.deliveries(kept.id).deliveries[0].key == "a2"
    assert webhooks.prune(clock.now - 3600) == 0
    assert webhooks.prune(clock.now + 1) == 2  # kept's two, sent or not; the deleted hook's went with it
    assert webhooks.deliveries(kept.id).deliveries == []


def test_a_receiver_that_never_answers_is_cut_off_at_the_timeout(services):
    webhooks.create_hook("http://slow/", ["*"], None, None)
    change("a", "a1")

    async def hang(*_args):
        await asyncio.sleep(3600)

    clock = Clock(time.time() + 1)
    send = webhooks.Deliverer(webhooks.DeliverySettings(timeout=0.2), send=hang, clock=clock)
    assert send.run_once() == 1
    [delivery] = webhooks.deliveries(webhooks.hooks()[0].id).deliveries
    assert (delivery.state, delivery.last_status, delivery.last_error) == ("pending", None, "no answer within 0.2 s")


# --- the pages ------------------------------------------------------------------------------------
def page_token(client, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def test_the_hooks_page_makes_shows_once_and_deletes_hooks(app, client, services):
    services.people.create_user("ada", PASSWORD)
    services.people.create_user("bob", PASSWORD, "member")
    signed = client.post("/login", data={"username": "ada", "password": PASSWORD,
                                         "csrf_token": page_token(client, "/login")})
    assert signed.status_code == 302
    assert 'data-testid="hooks-link"' in client.get("/").get_data(as_text=True)
    token = page_token(client, "/hooks")
    form = {"url": RECEIVER, "actions": "upload, delete", "buckets": "b", "csrf_token": token}
    assert client.post("/hooks", data={**form, "csrf_token": ""}).status_code == 403  # no CSRF token: nothing made
    assert webhooks.hooks() == []
    made = client.post("/hooks", data=form)
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    [hook] = webhooks.hooks()
    assert (hook.url, hook.actions, hook.buckets) == (RECEIVER, ["upload", "delete"], ["b"])
    shown = re.search(r'readonly value="([0-9a-f]{64})" data-testid="hook-secret"', made.get_data(as_text=True))
    assert shown, made.get_data(as_text=True)
    listing = client.get("/hooks").get_data(as_text=True)
    assert shown.group(1) not in listing and f'data-id="{hook.id}"' in listing
    refused = client.post("/hooks", data={**form, "url": "ftp://x"}, follow_redirects=True)
    assert "No hook was made: url must be" in refused.get_data(as_text=True) and len(webhooks.hooks()) == 1
    client.put("/v1/files/b/x.txt", data=b"x", headers={"X-CSRF-Token": token})
    log = client.get(f"/hooks/{hook.id}").get_data(as_text=True)
    assert 'data-testid="delivery-row"' in log and "x.txt" in log and 'data-state="pending"' in log
    assert client.get("/hooks/999").status_code == 404
    assert client.post(f"/hooks/{hook.id}/delete", data={"csrf_token": "made-up"}).status_code == 403
    assert client.post(f"/hooks/{hook.id}/delete", data={"csrf_token": token}).status_code == 302
    assert webhooks.hooks() == []
    # A member sees neither the link nor the pages.
    client.post("/logout", data={"csrf_token": token})
    client.post("/login", data={"username": "bob", "password": PASSWORD, "csrf_token": page_token(client, "/login")})
    assert 'data-testid="hooks-link"' not in client.get("/").get_data(as_text=True)
    assert client.get("/hooks").status_code == 403
