"""The peer: tuspyserver (a FastAPI tus router), as its README shows it, run under uvicorn."""

import os

from fastapi import FastAPI
from tuspyserver import create_tus_router

app = FastAPI()
app.include_router(create_tus_router(prefix="files", files_dir=os.environ.get("PEER_DATA_DIR", "/tmp/peer-data")))


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
