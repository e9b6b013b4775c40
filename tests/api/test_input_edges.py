"""The lesser findings of issue #22, at the edges of input: zip entry names whatever the prefix, Markdown
images that percent-encode their way out of the bucket, lone surrogates in every JSON body, invisible
and bidi marks in keys, and the name an OpenAI file is saved as. Each: a 4xx in the one error shape
(or a safe answer), and nothing stored lost."""

from __future__ import annotations

import io
import json
import posixpath
import re
import zipfile
from urllib.parse import quote, unquote

import pytest

from tests.helpers import assert_error, bearer, make_token, put

# --- 1. zip entry names ------------------------------------------------------------------------------

TRICKY_KEYS = ["zipt/x", "zipt/x../evil.txt", "zipt/x/abs.txt", "zipt/xy.txt", "zipt/x/.hidden", "zipt/y.txt"]


def zip_names(response) -> list[str]:
    assert response.status_code == 200, response.data
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.testzip() is None
    return archive.namelist()


def assert_safe_names(names: list[str]) -> None:
    for name in names:
        assert name and not name.startswith("/") and "\\" not in name, name
        assert all(segment not in ("", ".", "..") for segment in name.split("/")), name


@pytest.mark.parametrize("prefix", ["zipt/x", "zipt/", "zipt", "z", "zipt/x/", "zipt/x."])
def test_zip_entry_names_are_never_empty_absolute_or_dotted_whatever_the_prefix(client, prefix):
    for key in TRICKY_KEYS:
        put(client, "zipt", key, key.encode())
    names = zip_names(client.get(f"/v1/zip/zipt?prefix={prefix}"))
    assert_safe_names(names)
    folder = prefix.rpartition("/")[0] + "/" if "/" in prefix else ""
    expected = {key[len(folder):]: key for key in TRICKY_KEYS if key.startswith(prefix)}
    assert sorted(names) == sorted(expected)  # relative to the prefix's folder, every file there
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/v1/zip/zipt?prefix={prefix}").data))
    assert {name: archive.read(name) for name in names} == {name: key.encode() for name, key in expected.items()}


def test_zip_of_selected_files_with_a_back_that_is_no_folder(client):
    """The page's selection zip names entries relative to `back`, a form field: any value gives safe names."""
    for key in TRICKY_KEYS:
        put(client, "zipt", key, key.encode())
    page = client.get("/b/zipt/")
    csrf = page.data.split(b'name="csrf-token" content="')[1].split(b'"')[0].decode()
    for back in ("zipt/x", "zipt/x/abs.txt", "../", "/", "zipt/x../"):
        answer = client.post("/b/zipt/zip", data={"key": TRICKY_KEYS, "back": back, "csrf_token": csrf})
        names = zip_names(answer)
        assert_safe_names(names)
        assert len(names) == len(TRICKY_KEYS)


# --- 2. Markdown images that leave the bucket --------------------------------------------------------

ESCAPES = [
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/s/zzz/f/x",
    "%2E%2E/%2E%2E/%2E%2E/v1/files",
    ".%2e/.%2e/.%2e/.%2e/x",
    "..%2f..%2f..%2f..%2fx",
    "..%2F..%2F..%2F..%2Fx",
    "..\\..\\..\\..\\x",
    "..%5c..%5c..%5c..%5cx",
    "%2e%2e%5c%2e%2e%5c%2e%2e%5c%2e%2e%5cx",
    "../../x",
    "pics/../../../x",
    "%2fv1%2ffiles",
    "%2f%2fevil.example/x.png",
]


def rendered_images(client, text: str) -> list[str]:
    put(client, "b", "docs/readme.md", text.encode())
    page = client.get("/b/b/docs/readme.md").get_data(as_text=True)
    rendered = page.split('data-testid="markdown-preview">', 1)[1].split("</div>", 1)[0]
    return [src.replace("&amp;", "&") for src in re.findall(r'<img src="([^"]*)"', rendered)]


def where_a_browser_goes(src: str) -> str:
    """What a browser fetches: dot segments (also percent-encoded ones) resolved, backslashes as slashes."""
    return posixpath.normpath(unquote(src).replace("\\", "/"))


@pytest.mark.parametrize("deployment", ["local"], indirect=True)  # checked before any storage: one configuration
@pytest.mark.parametrize("source", ESCAPES)
def test_a_markdown_image_never_leaves_the_bucket_by_escapes(client, source):
    for src in rendered_images(client, f"![x]({source})\n"):
        assert src.startswith("/v1/content/b/"), src
        assert where_a_browser_goes(src).startswith("/v1/content/b/"), src
        assert "%2e" not in src.lower() and "\\" not in src and "%5c" not in src.lower(), src


def test_markdown_images_inside_the_bucket_still_load(client):
    text = "![a](pics/cat%20one.png) ![b](../top.png) ![c](./same.png) ![d](%2e%2e/up%2e.png) ![e](p%C3%BC.png)\n"
    assert rendered_images(client, text) == ["/v1/content/b/docs/pics/cat%20one.png", "/v1/content/b/top.png",
                                             "/v1/content/b/docs/same.png", "/v1/content/b/up..png",
                                             "/v1/content/b/docs/p%C3%BC.png"]


# --- 3. lone surrogates in JSON bodies ----------------------------------------------------------------

LONE = '"a\\ud800b"'
JSON_ROUTES = [
    ("POST", "/v1/files", '{"bucket": "b", "key": %s, "size": 1}'),
    ("POST", "/v1/move", '{"bucket": "b", "key": %s, "to_key": "x"}'),
    ("POST", "/v1/copy", '{"bucket": "b", "key": "k", "to_key": %s}'),
    ("PUT", "/v1/quotas/b", '{"max_bytes": %s}'),
    ("POST", "/v1/users", '{"name": %s, "password": "correct horse battery"}'),
    ("POST", "/v1/tokens", '{"name": %s, "scope": "read"}'),
    ("POST", "/v1/hooks", '{"url": %s}'),
    ("POST", "/v1/shares", '{"bucket": "b", "key": %s}'),
]
OPENAI_JSON_ROUTES = [
    ("POST", "/v1/openai/v1/uploads", '{"filename": %s, "purpose": "batch", "bytes": 1, "mime_type": "text/plain"}'),
]


@pytest.mark.parametrize("deployment", ["local"], indirect=True)  # checked before any storage: one configuration
@pytest.mark.parametrize(("method", "path", "body"), JSON_ROUTES)
def test_a_lone_surrogate_in_a_json_body_is_a_400(client, method, path, body):
    put(client, "b", "k", b"kept")
    for content_type in (None, "application/json", "application/x-www-form-urlencoded"):
        headers = {"Content-Type": content_type} if content_type else {}
        error = assert_error(client.open(path, method=method, data=body % LONE, headers=headers), 400, "invalid_json")
        assert "surrogate" in error["message"]
    assert client.get("/v1/content/b/k").data == b"kept"


@pytest.mark.parametrize(("method", "path", "body"), OPENAI_JSON_ROUTES)
def test_a_lone_surrogate_in_an_openai_json_body_is_a_400_in_openais_shape(client, method, path, body):
    answer = client.open(path, method=method, data=body % LONE, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.content_type == "application/json"
    error = answer.get_json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_json")
    assert "surrogate" in error["message"]


def test_a_surrogate_pair_is_text(client):
    answer = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "\U0001f600.txt", "size": 0}))
    assert answer.status_code == 201, answer.data


# --- 4. invisible and bidi marks in keys -------------------------------------------------------------

INVISIBLE = {"\u200f": "RIGHT-TO-LEFT MARK", "\u061c": "ARABIC LETTER MARK", "\u2028": "LINE SEPARATOR",
             "\ufeff": "ZERO WIDTH NO-BREAK SPACE", "\u200b": "ZERO WIDTH SPACE", "\u00ad": "SOFT HYPHEN",
             "\u2060": "WORD JOINER", "\u2029": "PARAGRAPH SEPARATOR", "\u202e": "RIGHT-TO-LEFT OVERRIDE",
             "\U000e0041": "TAG LATIN CAPITAL LETTER A"}


@pytest.mark.parametrize("deployment", ["local"], indirect=True)  # checked before any storage: one configuration
@pytest.mark.parametrize("mark", sorted(INVISIBLE))
def test_invisible_and_bidi_marks_are_refused_in_new_keys_saying_which(client, mark):
    key = f"report{mark}.txt"
    code = f"U+{ord(mark):04X}"
    for answer in (client.put(f"/v1/files/b/{key}", data=b"x"),
                   client.post("/v1/files", data=json.dumps({"bucket": "b", "key": key, "size": 1}))):
        error = assert_error(answer, 400, "invalid_key")
        assert code in error["message"] and INVISIBLE[mark] in error["message"], error
    put(client, "b", "plain.txt", b"p")
    error = assert_error(client.post("/v1/move", data=json.dumps({"bucket": "b", "key": "plain.txt", "to_key": key})),
                         400, "invalid_key")
    assert code in error["message"]
    assert client.get("/v1/files/b/plain.txt").status_code == 200  # nothing moved
    assert assert_error(client.put(f"/v1/files/b{mark}/k", data=b"x"), 400, "invalid_bucket")


def test_control_characters_are_named_too(client):
    error = assert_error(client.put("/v1/files/b/a%07b", data=b"x"), 400, "invalid_key")
    assert "U+0007" in error["message"]


@pytest.mark.parametrize("deployment", ["local"], indirect=True)  # checked before any storage: one configuration
@pytest.mark.parametrize("name", ["👨\u200d👩\u200d👧.png", "می\u200cخواهم.txt", "❤\ufe0f.txt", "Été 2024.jpg"])
def test_joiners_and_variation_selectors_that_real_names_need_are_kept(client, name):
    assert put(client, "b", name, b"x")["key"] == name


def test_keys_stored_with_invisible_marks_before_the_rule_stay_readable_and_deletable(app, client):
    """A key stored under the older rule: listed, read, moved away and deleted, never locked out."""
    from files_app.models import StoredObject, db

    put(client, "b", "old.txt", b"from before")
    old_key = "old\u200f\u202e.txt"
    with app.app_context():
        row = db.session.execute(db.select(StoredObject).where(StoredObject.key == "old.txt")).scalar_one()
        row.key = old_key
        db.session.commit()
    assert [f["key"] for f in client.get("/v1/files/b").get_json()["data"]] == [old_key]
    assert client.get(f"/v1/files/b/{old_key}").status_code == 200
    assert client.get(f"/v1/content/b/{old_key}").data == b"from before"
    moved = client.post("/v1/copy", data=json.dumps({"bucket": "b", "key": old_key, "to_key": "renamed.txt"}))
    assert moved.status_code == 200, moved.data
    assert client.delete(f"/v1/files/b/{old_key}").status_code in (200, 204)
    assert client.get(f"/v1/files/b/{old_key}").status_code == 404
    assert client.get("/v1/content/b/renamed.txt").data == b"from before"


def test_a_folder_named_before_the_rule_can_still_be_counted_moved_and_deleted(app, client):
    """Its files are reachable one by one; the folder routes reach them all (only a new name is checked)."""
    from files_app.models import StoredObject, db

    for name in ("a.txt", "b.txt"):
        put(client, "b", f"dir/{name}", name.encode())
    with app.app_context():
        for row in db.session.execute(db.select(StoredObject)).scalars():
            row.key = row.key.replace("dir/", "old\u200f/")
        db.session.commit()
    old = quote("old\u200f/")
    assert client.get(f"/v1/folders/b/{old}").get_json()["files"] == 2
    copied = client.post("/v1/copy", data=json.dumps({"bucket": "b", "prefix": "old\u200f/", "to_prefix": "new/"}))
    assert copied.status_code == 200, copied.data
    assert client.post("/v1/copy", data=json.dumps({"bucket": "b", "prefix": "new/",
                                                     "to_prefix": "x\u200f/"})).status_code == 400
    assert client.delete(f"/v1/folders/b/{old}").get_json()["deleted"] == 2
    assert sorted(f["key"] for f in client.get("/v1/files/b").get_json()["data"]) == ["new/a.txt", "new/b.txt"]


# --- 5. the name an OpenAI file is saved as -----------------------------------------------------------

def openai_upload(client, filename: str, content: bytes = b"hello"):
    body = (b'--X\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            b'--X\r\nContent-Disposition: form-data; name="file"; filename="' + filename.encode() +
            b'"\r\nContent-Type: text/plain\r\n\r\n' + content + b"\r\n--X--\r\n")
    return client.post("/v1/openai/v1/files", data=body, headers={"Content-Type": "multipart/form-data; boundary=X"})


def disposition_names(header: str) -> tuple[str, str]:
    plain = re.search(r'filename="([^"]*)"', header)[1]
    extended = unquote(re.search(r"filename\*=UTF-8''([^;]*)", header)[1])
    return plain, extended


@pytest.mark.parametrize(("filename", "saved_as"), [
    ("../evil.txt", "evil.txt"),
    ("/etc/passwd", "passwd"),
    ("dir/sub/report.csv", "report.csv"),
    ("..", "file"),
    ("résumé 2024.txt", "résumé 2024.txt"),
])
def test_an_openai_download_is_saved_under_a_safe_base_name(client, filename, saved_as):
    created = openai_upload(client, filename)
    assert created.status_code == 200, created.data
    assert created.get_json()["filename"] == filename  # shown back as given, as OpenAI does
    content = client.get(f"/v1/openai/v1/files/{created.get_json()['id']}/content")
    assert content.status_code == 200 and content.data == b"hello"
    disposition = content.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    plain, extended = disposition_names(disposition)
    assert extended == saved_as
    assert "/" not in plain and "\\" not in plain and plain not in ("", ".", "..") and plain.isascii()


def test_an_openai_filename_with_invisible_marks_is_refused_with_its_param(client):
    answer = openai_upload(client, "invoice\u202etxt.exe")
    assert answer.status_code == 400, answer.data
    error = answer.get_json()["error"]
    assert error["param"] == "filename" and "U+202E" in error["message"]
    assert client.get("/v1/openai/v1/files").get_json()["data"] == []


def test_downloads_of_keys_with_odd_names_send_only_a_base_name(client):
    put(client, "b", "a/b\\..\\evil.txt", b"x")
    plain, extended = disposition_names(client.get("/v1/content/b/a/b\\..\\evil.txt").headers["Content-Disposition"])
    assert extended == "evil.txt" and plain == "evil.txt"


# --- 6. an open service answers loopback only, however it is served ------------------------------------

ELSEWHERE = {"REMOTE_ADDR": "203.0.113.9"}


def test_an_open_service_refuses_peers_off_loopback_in_the_app(client, runner, settings):
    put(client, "b", "k", b"kept")
    for peer in ("203.0.113.9", "10.0.0.2", "::ffff:203.0.113.9", "2001:db8::1"):
        error = assert_error(client.get("/v1/files/b", environ_base={"REMOTE_ADDR": peer}), 403, "forbidden")
        assert peer in error["message"] and "FILES_AUTH=off" in error["message"]
    assert_error(client.delete("/v1/files/b/k", environ_base=ELSEWHERE), 403, "forbidden")
    assert client.get("/healthz", environ_base=ELSEWHERE).status_code == 200  # public routes answer anyone
    assert "metrics need" in assert_error(client.get("/metrics", environ_base=ELSEWHERE), 403, "forbidden")["message"]
    for peer in ("127.0.0.1", "::1", "127.8.9.10"):
        assert client.get("/v1/content/b/k", environ_base={"REMOTE_ADDR": peer}).data == b"kept"
    token = make_token(runner, "read")
    assert_error(client.get("/v1/files/b", environ_base=ELSEWHERE), 401, "unauthorized")  # closed: as usual
    assert client.get("/v1/content/b/k", environ_base=ELSEWHERE, headers=bearer(token)).data == b"kept"


def test_an_open_service_run_open_on_purpose_answers_everyone(settings):
    from tests.helpers import app_with

    client = app_with(settings, FILES_AUTH="off").test_client()
    assert client.get("/v1/files", environ_base=ELSEWHERE).status_code == 200
