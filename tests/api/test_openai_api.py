"""The OpenAI routes through Flask's test client: hostile and malformed multipart bodies get a 4xx
in OpenAI's error shape, and leave nothing stored."""

from __future__ import annotations

import json

import pytest

from tests.helpers import blob_ids

FILES = "/v1/openai/v1/files"


def openai_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.data
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code
    return error


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(client, body: bytes, content_type: str | None, path: str = FILES):
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post(path, data=body, headers=headers)


def test_a_valid_body_stores_the_file(client, services):
    body, content_type = multipart(("purpose", None, b"assistants"), ("file", "a.txt", b"abc" * 1000))
    file = post(client, body, content_type).get_json()
    assert (file["bytes"], file["filename"], file["purpose"]) == (3000, "a.txt", "assistants")
    with services.objects.open("openai", f"{file['id']}/a.txt")[1] as stream:
        assert stream.read() == b"abc" * 1000


@pytest.mark.parametrize("body, content_type, status, code", [
    (b"purpose=batch", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"--x\r\n", "multipart/form-data", 415, "unsupported_media_type"),  # no boundary
    (b"--" + b"x" * 71 + b"\r\n", "multipart/form-data; boundary=" + "x" * 71, 400, "invalid_multipart"),
    (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc", "multipart/form-data; "
     "boundary=x", 400, "incomplete_body"),  # ends inside the file
    (b"garbage without a boundary" * 100, "multipart/form-data; boundary=x", 400, "incomplete_body"),
    (b"--x\r\nContent-Disposition: form-data; name=\"\xff\"\r\n\r\nv\r\n--x--\r\n", "multipart/form-data; "
     "boundary=x", 400, "incomplete_body"),  # a header that is not UTF-8
    (b"--x\r\n" + b"X-Long: " + b"a" * (5 * 1024 * 1024), "multipart/form-data; boundary=x", 413, "too_large"),
])
def test_malformed_bodies_are_refused(client, services, body, content_type, status, code):
    openai_error(post(client, body, content_type), status, code)
    assert blob_ids(services.store) == []
    assert client.get(FILES).get_json()["data"] == []


def test_too_many_parts_and_too_long_fields(client):
    body, content_type = multipart(*[(f"f{i}", None, b"v") for i in range(101)])
    openai_error(post(client, body, content_type), 413, "too_large")
    body, content_type = multipart(("purpose", None, b"a" * (64 * 1024 + 1)), ("file", "a", b"x"))
    assert openai_error(post(client, body, content_type), 400, "invalid_multipart")["param"] == "purpose"


@pytest.mark.parametrize("filename, param", [("\x07bell", "filename"), ("n" * 901, "filename")])
def test_bad_file_names(client, filename, param):
    body, content_type = multipart(("purpose", None, b"batch"), ("file", filename, b"x"))
    assert openai_error(post(client, body, content_type), 400, "invalid_filename")["param"] == param


def test_a_name_that_is_a_path_is_kept_as_a_name_and_its_key_is_its_base_name(client):
    body, content_type = multipart(("purpose", None, b"batch"), ("file", "../../etc/passwd", b"x"))
    file = post(client, body, content_type).get_json()
    assert file["filename"] == "../../etc/passwd"
    listing = client.get("/v1/files/openai").get_json()["data"]
    assert [entry["key"] for entry in listing] == [f"{file['id']}/passwd"]


@pytest.mark.parametrize("fields, param", [
    ({"filename": "a", "purpose": "batch", "bytes": 1}, "mime_type"),
    ({"filename": "a", "purpose": "batch", "bytes": "1", "mime_type": "text/plain"}, "bytes"),
    ({"filename": "a", "purpose": "batch", "bytes": True, "mime_type": "text/plain"}, "bytes"),
    ({"filename": "a", "purpose": "batch", "bytes": 1, "mime_type": "text"}, "mime_type"),
    ({"filename": "", "purpose": "batch", "bytes": 1, "mime_type": "text/plain"}, "filename"),
    ({"filename": "a", "purpose": "batch", "bytes": 1, "mime_type": "text/plain", "expires_after": 5},
     "expires_after"),
    ({"filename": "a", "purpose": "batch", "bytes": 1, "mime_type": "text/plain",
      "expires_after": {"anchor": "now", "seconds": 4000}}, "expires_after[anchor]"),
])
def test_upload_creation_checks_every_field(client, fields, param):
    response = client.post("/v1/openai/v1/uploads", data=json.dumps(fields))
    assert openai_error(response, 400)["param"] == param


def test_an_upload_larger_than_the_maximum_is_413(client, app):
    fields = {"filename": "a", "purpose": "batch", "bytes": app.config["FILES_MAX_OBJECT_SIZE"] + 1,
              "mime_type": "text/plain"}
    openai_error(client.post("/v1/openai/v1/uploads", data=json.dumps(fields)), 413, "too_large")


@pytest.mark.parametrize("part_ids", [None, "part_x", [1, 2], [["part_" + "0" * 32]], ["part_" + "0" * 32] * 2,
                                      ["part_" + "0" * 32]])
def test_completion_checks_the_part_ids(client, part_ids):
    upload = client.post("/v1/openai/v1/uploads", data=json.dumps(
        {"filename": "a", "purpose": "batch", "bytes": 0, "mime_type": "text/plain"})).get_json()
    response = client.post(f"/v1/openai/v1/uploads/{upload['id']}/complete", data=json.dumps({"part_ids": part_ids}))
    assert openai_error(response, 400)["param"] == "part_ids"


def test_an_empty_upload_of_no_parts_makes_an_empty_file(client):
    upload = client.post("/v1/openai/v1/uploads", data=json.dumps(
        {"filename": "empty.txt", "purpose": "batch", "bytes": 0, "mime_type": "text/plain"})).get_json()
    done = client.post(f"/v1/openai/v1/uploads/{upload['id']}/complete", data=json.dumps({"part_ids": []}))
    assert done.get_json()["file"]["bytes"] == 0
    assert client.get(f"{FILES}/{done.get_json()['file']['id']}/content").data == b""


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "order=up", "after=file-1", "purpose=x",
                                   "limit=1&limit=2"])
def test_bad_list_queries(client, query):
    openai_error(client.get(f"{FILES}?{query}"), 400)
