"""The seed's curl examples and the resumable flows, against a real gunicorn server."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time

import pytest

from tests.helpers import curl, send_partially, session_offset, sha256, wait_for_offset

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024




def test_seed_examples(server, tmp_path):
    local = tmp_path / "image123.jpg"
    local.write_bytes(content := os.urandom(12345))
    # The seed's JSON, with its one typo (a ' closing "image123.jpg") fixed so a shell can run it.
    status, session = curl("-X", "POST", f"{server.url}/v1/files", "-d",
                           '{ "key": "image123.jpg", "bucket": "images", "mime_type": "image/jpg", "size": 12345 }')
    assert status == 201
    assert session == {"id": session["id"], "url": f"{server.url}/v1/files/session:{session['id']}",
                       "offset": 0, "size": 12345}

    status, file = curl("-X", "POST", session["url"], "--data-binary", f"@{local}")
    assert status == 200
    assert (file["key"], file["bucket"], file["mime_type"], file["bytes"]) == ("image123.jpg", "images",
                                                                               "image/jpg", 12345)
    assert file["sha256"] == sha256(content) and abs(file["created_at"] - time.time()) < 60

    assert curl("-X", "GET", session["url"]) == (200, {**session, "offset": 12345})
    status, buckets = curl(f"{server.url}/v1/files")
    assert status == 200 and [bucket["name"] for bucket in buckets["data"]] == ["images"]
    assert session["id"] and abs(buckets["data"][0]["created_at"] - file["created_at"]) <= 1
    status, listing = curl(f"{server.url}/v1/files/images")
    assert status == 200 and listing["data"] == [file]
    assert curl(f"{server.url}/v1/files/images/image123.jpg") == (200, {**file, "uploaded_by": None})

    downloaded = tmp_path / "downloaded"
    subprocess.run(["curl", "-sS", "-o", str(downloaded), file["url"]], check=True, timeout=60)
    assert downloaded.read_bytes() == content

    assert curl("-X", "DELETE", f"{server.url}/v1/files/images/image123.jpg") == (200, file)
    status, error = curl(f"{server.url}/v1/files/images/image123.jpg")
    assert status == 404 and error["error"]["code"] == "not_found"


def test_chunked_upload_with_a_wrong_offset_in_the_middle(server, tmp_path):
    data = os.urandom(3 * MIB + 5)
    _, session = curl("-X", "POST", f"{server.url}/v1/files", "-d",
                      json.dumps({"bucket": "b", "key": "chunks.bin", "size": len(data)}))
    chunk = tmp_path / "chunk"
    offset = 0
    for index, start in enumerate(range(0, len(data), MIB)):
        if index == 2:  # a stale client retries an old chunk
            chunk.write_bytes(data[:MIB])
            status, error = curl("-X", "POST", session["url"], "-H", "Upload-Offset: 0", "--data-binary", f"@{chunk}")
            assert status == 409 and error["error"]["offset"] == offset
            assert session_offset(server, session["id"]) == offset
        chunk.write_bytes(data[start:start + MIB])
        status, body = curl("-X", "POST", session["url"], "-H", f"Upload-Offset: {start}", "--data-binary",
                            f"@{chunk}")
        assert status == 200
        offset = start + len(data[start:start + MIB])
    assert body["sha256"] == sha256(data) and body["bytes"] == len(data)


def test_streamed_chunked_transfer_encoding(server, tmp_path):
    local = tmp_path / "big"
    local.write_bytes(data := os.urandom(5 * MIB + 1))
    _, session = curl("-X", "POST", f"{server.url}/v1/files", "-d",
                      json.dumps({"bucket": "b", "key": "big", "size": len(data)}))
    status, file = curl("-X", "POST", session["url"], "-H", "Transfer-Encoding: chunked", "-T", str(local))
    assert status == 200 and file["sha256"] == sha256(data)


def test_range_download_with_curl(server, tmp_path):
    data = os.urandom(MIB)
    _, session = curl("-X", "POST", f"{server.url}/v1/files", "-d",
                      json.dumps({"bucket": "b", "key": "r.bin", "size": len(data)}))
    (tmp_path / "r").write_bytes(data)
    _, file = curl("-X", "POST", session["url"], "--data-binary", f"@{tmp_path / 'r'}")
    result = subprocess.run(["curl", "-sS", "-r", "1000-200999", "-D", "-", "-o", str(tmp_path / "part"),
                             file["url"]], capture_output=True, check=True, timeout=60)
    headers = result.stdout.decode()
    assert headers.startswith("HTTP/1.1 206")
    assert f"content-range: bytes 1000-200999/{len(data)}" in headers.lower()
    assert (tmp_path / "part").read_bytes() == data[1000:201000]




def post_until_unlocked(url: str, offset: int, body: bytes, timeout: float = 30.0) -> tuple[int, dict]:
    """What a well-behaved client does with 423: wait Retry-After, then try again."""
    deadline = time.monotonic() + timeout
    while True:
        request = http.client.HTTPConnection(url.split("/")[2], timeout=30)
        request.request("POST", "/" + url.split("/", 3)[3], body=body, headers={"Upload-Offset": str(offset)})
        response = request.getresponse()
        answer = json.loads(response.read())
        if response.status != 423 or time.monotonic() > deadline:
            return response.status, answer
        time.sleep(min(float(response.getheader("Retry-After")), 1.0))


def test_sigkill_mid_upload_then_restart_and_resume(server_factory):
    server = server_factory(FILES_CHECKPOINT_BYTES=str(MIB), FILES_LEASE_TTL="2").start()
    data = os.urandom(8 * MIB)
    _, session = curl("-X", "POST", f"{server.url}/v1/files", "-d",
                      json.dumps({"bucket": "b", "key": "crash.bin", "size": len(data)}))
    connection = send_partially(server, session["url"], data, 5 * MIB)
    wait_for_offset(server, session["id"], 4 * MIB)
    server.kill()
    connection.close()

    server.start()  # same data dir, new process
    durable = session_offset(server, session["id"])
    assert 4 * MIB <= durable <= 5 * MIB
    resumed_url = f"{server.url}/v1/files/session:{session['id']}"
    status, file = post_until_unlocked(resumed_url, durable, data[durable:])
    assert status == 200, file
    assert file["sha256"] == sha256(data) and file["bytes"] == len(data)
    result = subprocess.run(["curl", "-sS", file["url"]], capture_output=True, check=True, timeout=60)
    assert result.stdout == data


@pytest.mark.parametrize("dialect", ["seed", "tus"])
def test_client_disconnect_keeps_what_arrived(server, dialect):
    data = os.urandom(3 * MIB)
    _, session = curl("-X", "POST", f"{server.url}/v1/files", "-d",
                      json.dumps({"bucket": "b", "key": "cut.bin", "size": len(data)}))
    headers = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0"} if dialect == "tus" else {}
    connection = send_partially(server, session["url"], data, 2 * MIB, method="PATCH" if headers else "POST",
                                **headers)
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()
    offset = wait_for_offset(server, session["id"], 2 * MIB)
    assert offset == 2 * MIB
    status, file = post_until_unlocked(session["url"], offset, data[offset:])
    assert status == 200 and file["sha256"] == sha256(data)


def test_broken_chunked_encoding_is_a_400(server):
    _, session = curl("-X", "POST", f"{server.url}/v1/files", "-d",
                      json.dumps({"bucket": "b", "key": "bad", "size": 100}))
    path = session["url"].removeprefix(server.url)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                     + b"5\r\nhello\r\nZZ\r\nnot a chunk\r\n0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                break
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert session_offset(server, session["id"]) in (0, 5)


def test_second_writer_gets_423_while_the_first_streams(server_factory):
    server = server_factory(FILES_CHECKPOINT_BYTES=str(MIB)).start()
    data = os.urandom(2 * MIB)
    _, session = curl("-X", "POST", f"{server.url}/v1/files", "-d",
                      json.dumps({"bucket": "b", "key": "busy", "size": len(data)}))
    first = send_partially(server, session["url"], data, MIB + MIB // 2)
    wait_for_offset(server, session["id"], MIB)  # the first request is streaming: it holds the lease
    second = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    second.request("POST", session["url"].removeprefix(server.url), body=data, headers={"Upload-Offset": "0"})
    response = second.getresponse()
    assert response.status == 423 and json.loads(response.read())["error"]["code"] == "session_locked"
    assert int(response.getheader("Retry-After")) >= 1
    first.send(data[MIB + MIB // 2:])
    reply = first.getresponse()
    assert reply.status == 200 and json.loads(reply.read())["sha256"] == sha256(data)


def test_parallel_uploads_all_land(any_server):
    server = any_server
    from concurrent.futures import ThreadPoolExecutor

    def one(index: int) -> dict:
        payload = f"file {index} ".encode() * 1000
        _, session = curl("-X", "POST", f"{server.url}/v1/files", "-d",
                          json.dumps({"bucket": "many", "key": f"f{index:02}", "size": len(payload)}))
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.request("POST", session["url"].removeprefix(server.url), body=payload)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        return json.loads(response.read()) | {"expected": sha256(payload)}

    with ThreadPoolExecutor(16) as pool:
        files = list(pool.map(one, range(32)))
    assert all(file["sha256"] == file["expected"] for file in files)
    _, listing = curl(f"{server.url}/v1/files/many")
    assert [file["key"] for file in listing["data"]] == [f"f{index:02}" for index in range(32)]


def test_put_with_curl(server, tmp_path):
    """`curl -T`: a whole file in one request, empty ones and stdin (chunked: 411) included."""
    import hashlib
    import os

    path, empty = tmp_path / "cat.jpg", tmp_path / "empty.txt"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 11))
    empty.write_bytes(b"")
    status, body = curl("-T", str(path), f"{server.url}/v1/files/pets/2024/cat.jpg")
    assert status == 200 and body["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert body["mime_type"] == "image/jpeg" and body["key"] == "2024/cat.jpg"
    status, body = curl("-T", str(empty), f"{server.url}/v1/files/pets/empty.txt")
    assert status == 200 and body["bytes"] == 0
    status, body = curl("-T", str(path), "-H", "If-None-Match: *", f"{server.url}/v1/files/pets/2024/cat.jpg")
    assert status == 412 and body["error"]["code"] == "precondition_failed"
    piped = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "-T", "-", f"{server.url}/v1/files/pets/s.bin"],
                           input=b"from a pipe", capture_output=True, check=True, timeout=60)  # chunked: no length
    assert piped.stdout.endswith(b"\n411") and b"length_required" in piped.stdout
    result = subprocess.run(["curl", "-sS", f"{server.url}/v1/content/pets/2024/cat.jpg"], capture_output=True,
                            check=True, timeout=60)
    assert result.stdout == path.read_bytes()
