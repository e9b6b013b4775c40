"""A folder as a zip, streamed: the files under a prefix with names relative to it, bytes intact."""

from __future__ import annotations

import io
import os
import zipfile

from tests.helpers import assert_error, bearer, make_token


def archive(response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(response.data))


def test_a_folder_and_a_bucket_as_zip(client):
    files = {"a/x.txt": b"small", "a/b/y.bin": os.urandom(300_000), "a/b/z.txt": b"", "c.txt": b"top"}
    for key, data in files.items():
        assert client.put(f"/v1/files/b/{key}", data=data).status_code == 200
    folder = client.get("/v1/zip/b?prefix=a/")
    assert 'filename="a.zip"' in folder.headers["Content-Disposition"]
    assert folder.headers["Content-Disposition"].startswith("attachment")
    zipped = archive(folder)
    assert zipped.testzip() is None
    assert zipped.namelist() == ["b/y.bin", "b/z.txt", "x.txt"]  # key order, relative to the folder
    assert {name: zipped.read(name) for name in zipped.namelist()} == {
        key[len("a/"):]: data for key, data in files.items() if key.startswith("a/")}
    whole = archive(client.get("/v1/zip/b"))
    assert sorted(whole.namelist()) == sorted(files) and whole.read("c.txt") == b"top"
    assert archive(client.get("/v1/zip/b?prefix=nothing/")).namelist() == []  # an empty, valid zip


def test_zip_refusals(client, runner):
    assert_error(client.get("/v1/zip/missing"), 404, "not_found")
    assert_error(client.get("/v1/zip/b?prefix=%01"), 400, "invalid_prefix")
    client.put("/v1/files/mine/k", data=b"x")
    client.put("/v1/files/theirs/k", data=b"y")
    confined = make_token(runner, "read", bucket="mine")
    assert archive(client.get("/v1/zip/mine", headers=bearer(confined))).read("k") == b"x"
    assert_error(client.get("/v1/zip/theirs", headers=bearer(confined)), 403, "forbidden")
    assert_error(client.get("/v1/zip/mine"), 401, "unauthorized")  # closed now that a token exists


def test_a_file_deleted_while_the_zip_is_made_is_left_out(app, client, monkeypatch):
    """The listing said it was there; by the time its turn came it was gone: the zip goes on
    without it, whole and valid, and no 500."""
    for key in ("f/1.txt", "f/2.txt", "f/3.txt"):
        client.put(f"/v1/files/b/{key}", data=key.encode())
    service = app.extensions["files"].objects
    real_open = service.open

    def deleted_first(bucket, key):
        if key == "f/2.txt":
            service.delete(bucket, key)  # a delete that committed between the listing and the read
        return real_open(bucket, key)

    monkeypatch.setattr(service, "open", deleted_first)
    zipped = archive(client.get("/v1/zip/b?prefix=f/"))
    assert zipped.testzip() is None and zipped.namelist() == ["1.txt", "3.txt"]


def test_entry_names_stay_inside_whatever_a_key_held():
    """Keys cannot hold these today; a name cut from one, or stored under an older rule, is made safe."""
    from files_app.services.archive import entry_name

    assert entry_name("b/y.bin") == "b/y.bin"
    assert entry_name("") == "file" and entry_name("/") == "file" and entry_name("..") == "file"
    assert entry_name("../evil.txt") == "evil.txt" and entry_name("/abs.txt") == "abs.txt"
    assert entry_name("a\\..\\..\\evil.txt") == "a/evil.txt" and entry_name("a//./b") == "a/b"
    assert entry_name("C:/Windows/x") == "C_/Windows/x"
