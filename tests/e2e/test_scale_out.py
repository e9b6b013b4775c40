"""Several app hosts on one PostgreSQL and one SeaweedFS: sessions move between hosts chunk by
chunk, survive a host killed mid-chunk, and ride out the object store going down."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import threading
import time

import pytest

from tests.live_server import GunicornServer
from tests.seaweedfs import SeaweedFS

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
# Small parts and checkpoints, so that 1 MiB chunks end inside parts and hosts must hand over
# held bytes; short leases, so that a killed host's lease runs out within the test.
HOST_SETTINGS = {"FILES_S3_PART_SIZE": str(5 * MIB), "FILES_CHECKPOINT_BYTES": str(MIB), "FILES_LEASE_TTL": "2",
                 "FILES_GC_INTERVAL": "0", "FILES_SECRET_KEY": "shared-by-every-host"}


def call(host: GunicornServer, method: str, path: str, body=None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response, data
    finally:
        connection.close()


def finish_upload(host, session: str, data: bytes, deadline: float = 60.0) -> dict:
    """What a resumable client does: ask where the session is, send the rest from there, and on a
    423 (a dead writer's lease), a 503 (a store coming back) or a broken connection, wait as
    Retry-After says and ask again. Returns the stored file."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        offset = json.loads(call(host, "GET", session)[1])["offset"]
        try:
            response, body = call(host, "POST", session, data[offset:], {"Upload-Offset": str(offset)})
        except OSError:  # answered (503) before the body was read, and closed
            time.sleep(0.2)  # then ask again, bounded by the deadline
            continue
        if response.status == 200:
            return json.loads(body)
        assert response.status in (423, 503), body
        time.sleep(float(response.getheader("Retry-After", "1")))  # the server says when to come back
    raise AssertionError(f"{session} did not finish within {deadline}s")


def start_hosts(tmp_path, count: int, shared: dict) -> list[GunicornServer]:
    hosts = []
    for index in range(count):  # one after another: the first applies the migrations
        host = GunicornServer(tmp_path / f"host-{index}" / "data", **HOST_SETTINGS, **shared)
        host.data_dir.mkdir(parents=True)
        hosts.append(host.start())
    return hosts


@pytest.fixture
def shared(postgres, seaweedfs):
    url = postgres.create_database()
    yield {"FILES_DATABASE_URL": url, **seaweedfs.settings(seaweedfs.create_bucket())}
    postgres.drop_database(url)


@pytest.fixture
def hosts(tmp_path, shared):
    started = start_hosts(tmp_path, 2, shared)
    yield started
    for host in started:
        host.kill()  # a graceful stop waited seconds per host for nothing: the database goes next


def assert_both_hosts_serve(hosts, bucket: str, key: str, data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    for host in hosts:
        response, body = call(host, "GET", f"/v1/files/{bucket}")
        assert response.status == 200
        assert [(f["key"], f["sha256"]) for f in json.loads(body)["data"]] == [(key, digest)]
        response, body = call(host, "GET", f"/v1/content/{bucket}/{key}")
        assert response.status == 200 and hashlib.sha256(body).hexdigest() == digest
        response, body = call(host, "GET", f"/v1/content/{bucket}/{key}", headers={"Range": "bytes=5242870-5242889"})
        assert response.status == 206 and body == data[5242870:5242890]


def test_seed_api_upload_alternates_hosts_chunk_by_chunk(hosts, seaweedfs, shared):
    data = os.urandom(12 * MIB + 333)
    response, body = call(hosts[0], "POST", "/v1/files",
                          json.dumps({"bucket": "shared", "key": "seed.bin", "size": len(data)}))
    assert response.status == 201, body
    session = "/v1/files/session:" + json.loads(body)["id"]
    for number, offset in enumerate(range(0, len(data), MIB)):
        host = hosts[number % 2]
        response, body = call(host, "POST", session, data[offset:offset + MIB], {"Upload-Offset": str(offset)})
        assert response.status == 200, body
        answer = json.loads(body)
        if offset + MIB < len(data):
            response, body = call(hosts[(number + 1) % 2], "GET", session)  # the other host sees it too
            assert json.loads(body)["offset"] == offset + MIB == answer["offset"]
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    assert_both_hosts_serve(hosts, "shared", "seed.bin", data)
    bucket = shared["FILES_S3_BUCKET"]
    assert [key.split("/")[0] for key in seaweedfs.keys(bucket)] == ["blobs"]  # no held bytes left behind
    assert seaweedfs.uploads(bucket) == []


def test_tus_upload_alternates_hosts_chunk_by_chunk(hosts):
    data = os.urandom(11 * MIB + 5)
    metadata = "bucket " + base64.b64encode(b"shared").decode() + ",filename " + base64.b64encode(b"tus.bin").decode()
    response, _ = call(hosts[1], "POST", "/v1/files", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Upload-Metadata": metadata})
    assert response.status == 201
    path = response.getheader("Location").split("://", 1)[1].split("/", 1)[1]
    offset, number = 0, 0
    while offset < len(data):
        host = hosts[number % 2]
        response, _ = call(host, "HEAD", "/" + path, headers={"Tus-Resumable": "1.0.0"})
        assert int(response.getheader("Upload-Offset")) == offset
        chunk = data[offset:offset + MIB]
        response, _ = call(host, "PATCH", "/" + path, chunk, {
            "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
        assert response.status == 204
        offset, number = int(response.getheader("Upload-Offset")), number + 1
    assert offset == len(data) and number == 12
    assert_both_hosts_serve(hosts, "shared", "tus.bin", data)


class SlowBody:
    """A request body sent in 256 KiB pieces that stops, mid-body, until told to go on."""

    def __init__(self, data: bytes, pause_after: int):
        self.data, self.pause_after = data, pause_after
        self.paused, self.resume = threading.Event(), threading.Event()

    def __iter__(self):
        for start in range(0, len(self.data), 256 * 1024):
            if start >= self.pause_after and not self.resume.is_set():
                self.paused.set()
                self.resume.wait(30)
            yield self.data[start:start + 256 * 1024]


def test_a_host_killed_mid_chunk_the_client_resumes_through_another(hosts):
    data = os.urandom(9 * MIB)
    response, body = call(hosts[0], "POST", "/v1/files",
                          json.dumps({"bucket": "shared", "key": "k.bin", "size": len(data)}))
    session = "/v1/files/session:" + json.loads(body)["id"]
    slow = SlowBody(data, pause_after=6 * MIB + 128 * 1024)
    failures = []

    def send() -> None:
        try:
            call(hosts[0], "POST", session, slow, {"Upload-Offset": "0", "Content-Length": str(len(data))})
        except OSError as error:  # the host dies under it
            failures.append(error)

    sender = threading.Thread(target=send)
    sender.start()
    assert slow.paused.wait(30)
    until = time.monotonic() + 30
    while json.loads(call(hosts[1], "GET", session)[1])["offset"] < 6 * MIB and time.monotonic() < until:
        time.sleep(0.05)  # polling the other host for the checkpoint, bounded by the deadline
    hosts[0].kill()  # mid-chunk: 6 MiB and a bit of 9 sent, the checkpoints durable
    slow.resume.set()
    sender.join(30)
    assert failures, "the killed host must not have answered"
    offset = json.loads(call(hosts[1], "GET", session)[1])["offset"]
    assert 6 * MIB <= offset < len(data)  # what was durable survived the kill
    assert finish_upload(hosts[1], session, data)["sha256"] == hashlib.sha256(data).hexdigest()
    assert_both_hosts_serve(hosts[1:], "shared", "k.bin", data)


def test_object_store_down_is_a_503_and_the_upload_resumes_after(tmp_path, postgres):
    weed = SeaweedFS()  # its own, to stop and start
    url = postgres.create_database()
    try:
        [host] = start_hosts(tmp_path, 1, {"FILES_DATABASE_URL": url, **weed.settings(weed.create_bucket())})
        data = os.urandom(7 * MIB)
        response, body = call(host, "POST", "/v1/files", json.dumps({"bucket": "b", "key": "k", "size": len(data)}))
        session = "/v1/files/session:" + json.loads(body)["id"]
        response, body = call(host, "POST", session, data[:3 * MIB], {"Upload-Offset": "0"})
        assert response.status == 200
        weed.stop(remove=False)
        for piece in (64 * 1024, 64 * 1024):  # twice: nothing moves while it is down
            response, body = call(host, "POST", session, data[3 * MIB:3 * MIB + piece], {"Upload-Offset": str(3 * MIB)})
            assert response.status == 503, body
            error = json.loads(body)["error"]
            assert (error["status"], error["code"]) == (503, "storage_unavailable")
            assert response.getheader("Retry-After")
        assert json.loads(call(host, "GET", session)[1])["offset"] == 3 * MIB
        response, body = call(host, "GET", "/v1/content/b/k")
        assert response.status == 404  # metadata still answers: no such file yet
        weed.start()
        assert finish_upload(host, session, data)["sha256"] == hashlib.sha256(data).hexdigest()
        response, body = call(host, "GET", "/v1/content/b/k")
        assert body == data
        host.kill()
    finally:
        weed.stop()
        postgres.drop_database(url)


def test_presigned_downloads_redirect_to_the_object_store(tmp_path, shared):
    [host] = start_hosts(tmp_path, 1, {**shared, "FILES_S3_PRESIGN": "1"})
    try:
        data = b"<html><script>alert(1)</script></html>" + b" " * 70_000  # a blob: above FILES_INLINE_MAX
        response, body = call(host, "POST", "/v1/files", json.dumps({"bucket": "b", "key": "page.html",
                                                                     "size": len(data)}))
        response, body = call(host, "POST", "/v1/files/session:" + json.loads(body)["id"], data)
        assert response.status == 200
        response, _ = call(host, "GET", "/v1/content/b/page.html")
        assert response.status == 302
        location = response.getheader("Location")
        assert location.startswith(shared["FILES_S3_ENDPOINT"] + "/")
        import urllib.request

        with urllib.request.urlopen(location) as direct:
            assert direct.read() == data
            assert direct.headers["Content-Disposition"].startswith("attachment")  # HTML never inline
        response, body = call(host, "GET", "/v1/content/b/page.html", headers={"Range": "bytes=1-4"})
        assert response.status == 206 and body == data[1:5]  # ranges are still served here
    finally:
        host.kill()
