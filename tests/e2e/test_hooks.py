"""Webhooks against a real receiver (an http.server on 127.0.0.1, in a thread of the test) and a real
gunicorn server, in both configurations: events arrive signed and in order per bucket; a receiver
that fails is retried until it succeeds; a receiver that hangs does not hold up uploads; and a
server SIGKILLed between the changes and their delivery delivers every event after its restart
(at least once), and none that did not happen.

The hooks are made before the server starts: a hook made through the API reaches the other
workers' copy of the hooks within a poll, a window these tests do not wait out with sleeps."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.sync_api import expect

from files_app import create_app
from files_app.schema import upgrade_database
from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.test_team_ui import axe_clean, browser_page, confirm, sign_in

FAST = {"FILES_HOOKS_POLL_MS": "100", "FILES_HOOKS_BACKOFF_MS": "200"}
WAIT = 90  # seconds a condition may take on a busy machine before the test fails
PASSWORD = "correct horse battery"


class Receiver:
    """Keeps every POST (in the order answered) and answers each with the next of `statuses`, or
    200. While `gate` is clear, every request waits for it first (`waiting` counts them)."""

    def __init__(self):
        self.received: list[dict] = []  # {"headers", "body", "event", "status"}
        self.statuses: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = 0
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.changed:
                    receiver.waiting += 1
                    receiver.changed.notify_all()
                receiver.gate.wait()
                with receiver.changed:
                    receiver.waiting -= 1
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.received.append({"headers": dict(self.headers), "body": body, "status": status,
                                              "event": json.loads(body)})
                    receiver.changed.notify_all()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone (timed out, or killed): it will send the event again

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_until(self, condition, what: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: condition(self), timeout=WAIT), f"{what}: {self.summary()}"

    def delivered(self) -> list[dict]:
        """The events answered with a 2xx, in the order they were answered (repeats included)."""
        with self.changed:
            return [r["event"] for r in self.received if 200 <= r["status"] < 300]

    def delivered_ids(self) -> set[int]:
        return {r["event"]["id"] for r in self.received if 200 <= r["status"] < 300}

    def summary(self) -> str:
        return str([(r["event"]["id"], r["event"]["bucket"], r["status"]) for r in self.received][-40:])

    def stop(self):
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.stop()


def prepared(server_factory, deployment, hooks: list[dict], admin: str | None = None, **settings) -> tuple:
    """A server (not started) whose database already holds an admin token, `hooks` (their ids and
    secrets come back) and, if named, an admin person."""
    server = server_factory(**deployment, **FAST, **settings)
    app = create_app({**server.env, "FILES_DATA_DIR": str(server.data_dir)})
    upgrade_database(app)
    with app.app_context():
        from files_app.models import db
        from files_app.services import webhooks

        _, token = app.extensions["files"].accounts.create_token("hooks", "admin")
        if admin:
            app.extensions["files"].people.create_user(admin, PASSWORD)
        made = [webhooks.create_hook(hook["url"], hook["actions"], hook.get("buckets"), hook.get("secret"))
                for hook in hooks]
        db.engine.dispose()
    return server, {"Authorization": f"Bearer {token}"}, [(info.id, secret) for info, secret in made]


def audited(server, headers: dict, buckets: tuple[str, ...], actions: tuple[str, ...]) -> list[dict]:
    """What happened, by the audit log: the entries of these buckets and actions, oldest first."""
    entries = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        for bucket in buckets:
            page = http.get("/v1/audit", params={"bucket": bucket, "limit": 1000}).json()
            assert not page["has_more"]
            entries += [e for e in page["data"] if e["action"] in actions]
    return sorted(entries, key=lambda entry: entry["id"])


def assert_signed(receiver: Receiver, secret: str) -> None:
    for request in receiver.received:
        expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request["headers"]["X-Files-Signature"], expected), request
        assert request["headers"]["X-Files-Event"] == str(request["event"]["id"])
        assert request["headers"]["X-Files-Delivery"].isdigit()
        assert request["headers"]["Content-Type"] == "application/json"


def assert_in_order_per_bucket(events: list[dict]) -> None:
    """Each bucket's events first arrive in the order of their ids. (At least once: an event may come
    again later, when its sender timed out or died before it heard the answer.)"""
    by_bucket: dict[str, list[int]] = {}
    for event in events:
        seen = by_bucket.setdefault(event["bucket"], [])
        if event["id"] not in seen:
            seen.append(event["id"])
    for bucket, ids in by_bucket.items():
        assert ids == sorted(ids), (bucket, ids)


def changes(url: str, headers: dict, bucket: str, count: int) -> list[str]:
    """Uploads, a replacing upload, a move and a delete in `bucket`, one after another; the keys stored."""
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for number in range(count):
            assert http.put(f"/v1/files/{bucket}/k{number}", content=b"x" * (number + 1)).status_code == 200
        assert http.put(f"/v1/files/{bucket}/k0", content=b"again").status_code == 200
        moved = http.post("/v1/move", json={"bucket": bucket, "key": "k1", "to_key": "moved"})
        assert moved.status_code == 200, moved.text
        assert http.delete(f"/v1/files/{bucket}/k2").status_code == 200
        return [f["key"] for f in http.get(f"/v1/files/{bucket}").json()["data"]]


def test_events_arrive_signed_and_in_order_per_bucket(server_factory, deployment, receiver):
    server, admin, [(hook, secret)] = prepared(server_factory, deployment, [
        {"url": receiver.url, "actions": ["upload", "move", "delete"], "buckets": ["red", "blue"]}])
    server.start()
    with ThreadPoolExecutor(3) as pool:  # the buckets change side by side, each one in order
        for done in [pool.submit(changes, server.url, admin, bucket, 12) for bucket in ("red", "blue", "grey")]:
            done.result()
    wanted = audited(server, admin, ("red", "blue"), ("upload", "move", "delete"))
    assert len(wanted) == 2 * 15
    receiver.wait_until(lambda r: r.delivered_ids() >= {e["id"] for e in wanted}, "every event delivered")
    # Exactly what happened (nothing of grey, no bucket.create), as the audit log says it, signed.
    assert receiver.delivered_ids() == {e["id"] for e in wanted}
    fields = ("id", "at", "action", "actor", "actor_name", "bucket", "key", "bytes", "detail", "outcome")
    by_id = {e["id"]: {name: e[name] for name in fields} for e in wanted}
    assert all(event == by_id[event["id"]] for event in receiver.delivered())
    assert_signed(receiver, secret)
    assert_in_order_per_bucket(receiver.delivered())
    log = httpx.get(f"{server.url}/v1/hooks/{hook}/deliveries", params={"limit": 1000}, headers=admin).json()
    assert sorted(d["event"] for d in log["data"]) == sorted(by_id)
    assert all(d["state"] == "delivered" and d["last_status"] == 200 and d["delivered_at"] for d in log["data"])


def test_a_failing_receiver_is_retried_until_it_succeeds_and_its_bucket_waits(server_factory, deployment,
                                                                             receiver):
    server, admin, [(hook, secret)] = prepared(server_factory, deployment, [
        {"url": receiver.url, "actions": ["upload"], "secret": "a shared secret, given"}])
    receiver.statuses = [500, 503, 500]
    server.start()
    with httpx.Client(base_url=server.url, headers=admin, timeout=30) as http:
        for key in ("first", "second", "third"):
            assert http.put(f"/v1/files/b/{key}", content=key.encode()).status_code == 200
    receiver.wait_until(lambda r: len(r.delivered()) >= 3, "three events delivered")
    assert [(r["event"]["key"], r["status"]) for r in receiver.received] == [
        ("first", 500), ("first", 503), ("first", 500), ("first", 200), ("second", 200), ("third", 200)]
    assert secret == "a shared secret, given"
    assert_signed(receiver, secret)
    log = httpx.get(f"{server.url}/v1/hooks/{hook}/deliveries", headers=admin).json()["data"]
    assert [(d["key"], d["attempts"], d["state"], d["last_status"]) for d in log] == [
        ("third", 1, "delivered", 200), ("second", 1, "delivered", 200), ("first", 4, "delivered", 200)]


def test_a_receiver_that_hangs_does_not_hold_up_uploads(server_factory, deployment, receiver):
    server, admin, [(hook, secret)] = prepared(server_factory, deployment, [
        {"url": receiver.url, "actions": ["upload"]}])
    receiver.gate.clear()
    server.start()
    with httpx.Client(base_url=server.url, headers=admin, timeout=30) as http:
        assert http.put("/v1/files/b/first", content=b"1").status_code == 200
        receiver.wait_until(lambda r: r.waiting >= 1, "the first event on its way")
        # The receiver holds that delivery; uploads go on, in that bucket and others, all answered.
        for number in range(20):
            assert http.put(f"/v1/files/b{number % 3}/k{number}", content=b"x").status_code == 200
        assert receiver.waiting >= 1 and not receiver.gate.is_set() and receiver.received == []
    receiver.gate.set()
    wanted = audited(server, admin, ("b", "b0", "b1", "b2"), ("upload",))
    receiver.wait_until(lambda r: r.delivered_ids() >= {e["id"] for e in wanted}, "every event delivered")
    assert receiver.delivered_ids() == {e["id"] for e in wanted}
    assert_signed(receiver, secret)
    assert_in_order_per_bucket(receiver.delivered())


def test_events_of_a_server_killed_before_their_delivery_arrive_after_its_restart(server_factory, deployment,
                                                                                 receiver):
    server, admin, [(hook, secret)] = prepared(server_factory, deployment, [
        {"url": receiver.url, "actions": ["upload", "move", "delete"]}], FILES_HOOKS_TIMEOUT="2")
    receiver.gate.clear()
    server.start()
    with ThreadPoolExecutor(2) as pool:
        stored = {bucket: done.result() for bucket, done in
                  [(bucket, pool.submit(changes, server.url, admin, bucket, 8)) for bucket in ("left", "right")]}
    receiver.wait_until(lambda r: r.waiting >= 1, "a delivery on its way")
    server.kill()  # every change is committed; the queue is all that holds their events
    receiver.gate.set()  # (what was in flight is answered to a sender that is gone)
    server.start()
    wanted = audited(server, admin, ("left", "right"), ("upload", "move", "delete"))
    assert len(wanted) == 2 * 11 and all(keys for keys in stored.values())
    receiver.wait_until(lambda r: r.delivered_ids() >= {e["id"] for e in wanted}, "every event delivered")
    assert receiver.delivered_ids() == {e["id"] for e in wanted}  # none lost, none that did not happen
    assert_signed(receiver, secret)
    assert_in_order_per_bucket(receiver.delivered())
    log = httpx.get(f"{server.url}/v1/hooks/{hook}/deliveries", params={"limit": 1000}, headers=admin).json()
    assert len(log["data"]) == len(wanted) and all(d["state"] == "delivered" for d in log["data"])


def eventually(condition, what: str) -> None:
    """Until `condition()` holds (checked every 50 ms), at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)  # polling a condition, bounded by the deadline


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_hooks_page_makes_a_hook_shows_its_secret_once_and_each_hooks_deliveries(server_factory, receiver,
                                                                                    browser, scheme):
    server, admin, [(hook, _)] = prepared(server_factory, {}, [{"url": receiver.url, "actions": ["upload"]}],
                                          admin="ada")
    server.start()
    for key in ("one", "two"):
        assert httpx.put(f"{server.url}/v1/files/b/{key}", content=b"x", headers=admin).status_code == 200
    eventually(lambda: [d["state"] for d in httpx.get(f"{server.url}/v1/hooks/{hook}/deliveries",
                                                       headers=admin).json()["data"]] == ["delivered"] * 2,
               "both events delivered")
    context, page = browser_page(browser, scheme)
    sign_in(page, server, "ada")
    with page.expect_navigation():
        page.click("[data-testid=hooks-link]")
    expect(page.locator("[data-testid=hook-row]")).to_have_count(1)
    axe_clean(page, "hooks")
    page.fill("[data-testid=hook-url-input]", receiver.url + "/other")
    page.fill("[data-testid=hook-actions]", "delete, share")
    page.fill("[data-testid=hook-buckets]", "b")
    with page.expect_navigation():
        page.click("[data-testid=hook-create]")
    secret = page.locator("[data-testid=hook-secret]").input_value()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    expect(page.locator("[data-testid=hook-row]")).to_have_count(2)
    axe_clean(page, "hook-made")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"hooks-made-{scheme}.png"), full_page=True)
    page.goto(server.url + "/hooks")  # shown once: not on the page again
    assert secret not in page.content()
    made = page.locator("[data-testid=hook-row]").nth(1)
    expect(made).to_contain_text("delete, share")
    with page.expect_navigation():
        page.click(f"[data-testid=hook-row][data-id='{hook}'] [data-testid=hook-link]")
    expect(page.locator("[data-testid=delivery-row][data-state=delivered]")).to_have_count(2)
    axe_clean(page, "hook-deliveries")
    page.screenshot(path=str(SCREENSHOTS / f"hooks-deliveries-{scheme}.png"), full_page=True)
    page.goto(server.url + "/hooks")
    confirm(page, made.locator("[data-testid=hook-delete]"))
    expect(page.locator("[data-testid=flash]").first).to_contain_text("The hook is deleted")
    expect(page.locator("[data-testid=hook-row]")).to_have_count(1)
    assert page.console_errors == []
    context.close()
