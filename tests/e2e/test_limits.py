"""Limits that protect the server, the scheduled gc, and a database that stops answering, against
the real server."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import time

import pytest

from tests.helpers import send_partially, session_offset, wait_for_offset

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


def post_json(server, path: str, fields: dict) -> tuple[int, dict, http.client.HTTPResponse]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", path, body=json.dumps(fields))
    response = connection.getresponse()
    return response.status, json.loads(response.read()), response


def test_a_stalled_client_is_cut_off_and_keeps_what_it_sent(server_factory):
    server = server_factory(FILES_CLIENT_TIMEOUT="1", FILES_CHECKPOINT_BYTES=str(MIB)).start()
    status, session, _ = post_json(server, "/v1/files", {"bucket": "slow", "key": "k", "size": 4 * MIB})
    connection = send_partially(server, session["url"], b"s" * 4 * MIB, MIB + 1000)  # then silence
    reply = connection.getresponse()  # the server gives up on the body, it does not wait for ever
    assert reply.status == 400 and json.loads(reply.read())["error"]["code"] == "incomplete_body"
    # What was durable stays (bytes of the one read in progress when the client stalled may not).
    assert MIB <= wait_for_offset(server, session["id"], MIB) <= MIB + 1000


def test_oversized_headers_are_refused(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/files HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 4")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        headers = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        sock.sendall(b"GET /v1/files HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 4")


def test_scheduled_gc_takes_abandoned_sessions_and_spares_live_ones(server_factory):
    server = server_factory(FILES_GC_INTERVAL="1", FILES_SESSION_TTL="3").start()
    _, abandoned, _ = post_json(server, "/v1/files", {"bucket": "gc", "key": "gone", "size": 10})
    _, live, _ = post_json(server, "/v1/files", {"bucket": "gc", "key": "kept", "size": 100})
    path = abandoned["url"].removeprefix(server.url)
    deadline = time.monotonic() + 30
    sent = 0
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        live_path = live["url"].removeprefix(server.url)
        connection.request("POST", live_path, body=b"x", headers={"Upload-Offset": str(sent)})
        response = connection.getresponse()
        response.read()
        assert response.status == 200  # activity keeps the live session alive
        sent += 1
        connection.request("GET", path)
        gone = connection.getresponse()
        gone.read()
        if gone.status == 404:
            break  # expired and collected by the running server
        assert time.monotonic() < deadline, "the scheduled gc never came"
        time.sleep(0.5)  # one byte every half second: the client's pace, not a timing assertion
    assert session_offset(server, live["id"]) == sent


def test_a_locked_database_is_a_503_and_the_service_recovers(server_factory):
    server = server_factory(FILES_SQLITE_BUSY_MS="200").start()
    assert post_json(server, "/v1/files", {"bucket": "db", "key": "before", "size": 1})[0] == 201
    holder = sqlite3.connect(server.data_dir / "files.db", isolation_level=None, timeout=5)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        status, body, response = post_json(server, "/v1/files", {"bucket": "db", "key": "during", "size": 1})
        assert status == 503 and body["error"]["code"] == "unavailable"
        assert response.getheader("Retry-After") == "1"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    status, session, _ = post_json(server, "/v1/files", {"bucket": "db", "key": "after", "size": 1})
    assert status == 201  # recovered by itself
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/v1/files/db")
    assert json.loads(connection.getresponse().read())["data"] == []  # nothing half done


def test_open_sessions_per_token_are_capped(server_factory):
    from tests.helpers import flask_files_ok

    server = server_factory(FILES_MAX_SESSIONS="2")
    server.data_dir.mkdir(parents=True, exist_ok=True)
    flask_files_ok(server, "init-db")
    token = flask_files_ok(server, "token", "create", "--name", "cap", "--scope", "write")
    server.start(health_headers={"Authorization": f"Bearer {token}"})
    statuses = []
    for index in range(3):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("POST", "/v1/files", body=json.dumps({"bucket": "cap", "key": f"k{index}", "size": 5}),
                           headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        statuses.append((response.status, json.loads(response.read()).get("error", {}).get("code")))
    assert statuses == [(201, None), (201, None), (429, "too_many_sessions")]

