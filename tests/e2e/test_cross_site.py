"""A hostile page on another origin, loaded in real Chromium, tries every write a page can send
without reading an answer: form POSTs (delete a file, create and delete buckets), a no-cors fetch
of a text/plain JSON body that would overwrite a file with an empty one, and sendBeacon. Against an
open service and a closed one whose user is signed in. Nothing changes, and the server saw (and
refused) every attempt."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e.conftest import Api
from tests.helpers import flask_files_ok as flask_cli

pytestmark = pytest.mark.e2e

ATTACK = """<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe>
<form id="delete-file" method="POST" action="{target}/b/victims/delete" target="sink1">
  <input name="key" value="victim.txt"><input name="csrf_token" value=""><input name="back" value=""></form>
<form id="make-bucket" method="POST" action="{target}/buckets" target="sink2"><input name="name" value="pwned"></form>
<form id="drop-bucket" method="POST" action="{target}/b/empty/delete-bucket" target="sink3"></form>
<script>
const target = "{target}";
const overwrite = JSON.stringify({{bucket: "victims", key: "victim.txt", size: 0}});
function submitted(form, frame) {{
  return new Promise(done => {{ frame.onload = done; document.getElementById(form).submit(); }});
}}
(async () => {{
  navigator.sendBeacon(target + "/v1/files", new Blob([overwrite], {{type: "text/plain"}}));
  try {{ await fetch(target + "/v1/files", {{method: "POST", mode: "no-cors", body: overwrite,
                                           headers: {{"Content-Type": "text/plain"}}, credentials: "include"}}); }}
  catch (e) {{}}
  try {{ await fetch(target + "/v1/files/victims/victim.txt", {{method: "POST", mode: "no-cors",
       headers: {{"X-HTTP-Method-Override": "DELETE"}}, credentials: "include"}}); }} catch (e) {{}}
  const frames = document.querySelectorAll("iframe");
  await submitted("delete-file", frames[0]);
  await submitted("make-bucket", frames[1]);
  await submitted("drop-bucket", frames[2]);
  document.body.dataset.done = "1";
}})();
</script></body></html>"""


def attacker_site(target: str) -> ThreadingHTTPServer:
    page = ATTACK.format(target=target).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    return site


class AuthedApi(Api):
    def __init__(self, base: str, token: str | None):
        super().__init__(base)
        self.token = token

    def call(self, method: str, path: str, body: bytes | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        with urllib.request.urlopen(request) as response:
            data = response.read()
            return json.loads(data) if data else {}


# The attacker's page on localhost is another site than 127.0.0.1 (SameSite cookies stay home); on
# 127.0.0.1 with another port it is the same site, another origin (a local dev server): cookies ride along.
@pytest.mark.parametrize("attacker_host", ["localhost", "127.0.0.1"])
@pytest.mark.parametrize("mode", ["open", "closed"])
def test_a_hostile_page_changes_nothing(page, server, mode, attacker_host):
    token = None
    if mode == "closed":
        token = flask_cli(server, "token", "create", "--name", "checks", "--scope", "admin")
        flask_cli(server, "user", "create", "--name", "ada", "--password", "correct horse")
    api = AuthedApi(server.url, token)
    api.put("victims", "victim.txt", b"precious bytes")
    api.call("POST", "/v1/files", json.dumps({"bucket": "empty", "key": "k", "size": 0}).encode())
    api.call("DELETE", "/v1/files/empty/k")
    if mode == "closed":  # the victim is signed in: the browser holds a session cookie for the service
        page.goto(server.url + "/login")
        page.fill("#username", "ada")
        page.fill("#password", "correct horse")
        page.click("[data-testid=sign-in]")
        page.wait_for_selector("[data-testid=sign-out]")
    log_before = server.log.read_text()
    site = attacker_site(server.url)
    try:
        page.goto(f"http://{attacker_host}:{site.server_address[1]}/")
        page.wait_for_selector("body[data-done='1']", state="attached", timeout=20_000)
    finally:
        site.shutdown()
    page.console_errors.clear()  # the refused requests are logged by the browser as failed loads
    assert api.file("victims", "victim.txt")["sha256"] == hashlib.sha256(b"precious bytes").hexdigest()
    assert sorted(bucket["name"] for bucket in api.call("GET", "/v1/files")["data"]) == ["empty", "victims"]
    # Every attempt reached the server and was refused there (not merely dropped by the browser).
    attempts = server.log.read_text()[len(log_before):]
    refused = [line for line in attempts.splitlines() if '" 403 ' in line]
    assert sum('"POST /v1/files HTTP' in line for line in refused) >= 2, attempts  # beacon and no-cors fetch
    for path in ("/b/victims/delete", "/buckets", "/b/empty/delete-bucket"):
        assert any(f'"POST {path} HTTP' in line for line in refused), (path, attempts)
