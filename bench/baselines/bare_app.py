"""The bare baseline: the least a Flask app must do to store and serve a file well.

Upload: copy request.stream to a temp file in 1 MiB chunks while hashing sha256, fsync, rename.
Download: send_file(conditional=True). No database, no sessions, no listing.
"""

import hashlib
import os

from flask import Flask, request, send_file

DATA = os.environ.get("BARE_DATA_DIR", "/tmp/bare-data")
os.makedirs(DATA, exist_ok=True)
app = Flask(__name__)


@app.post("/upload/<name>")
def upload(name):
    digest = hashlib.sha256()
    temp = os.path.join(DATA, name + ".part")
    with open(temp, "wb") as out:
        while chunk := request.stream.read(1024 * 1024):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.rename(temp, os.path.join(DATA, name))
    return {"sha256": digest.hexdigest()}


@app.get("/download/<name>")
def download(name):
    return send_file(os.path.join(DATA, name), conditional=True)


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
