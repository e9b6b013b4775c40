"""Where the client keeps what `files login` said (0600, in the user's config dir) and what it needs
to resume transfers (the state dir). FILES_URL and FILES_TOKEN override the saved login."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP = "files"


@dataclass(frozen=True)
class Login:
    url: str
    token: str | None


def config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "config.json"


def state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP))


def save_login(url: str, token: str | None) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written with 0600 from the start: the token is never readable by others, even for a moment.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({"url": url.rstrip("/"), "token": token}, out)
    path.chmod(0o600)
    return path


def load_login() -> Login | None:
    saved: dict = {}
    path = config_path()
    if path.exists():
        saved = json.loads(path.read_text())
    url = os.environ.get("FILES_URL") or saved.get("url")
    if not url:
        return None
    token = os.environ.get("FILES_TOKEN") or saved.get("token") or None
    return Login(url.rstrip("/"), token)


class TransferState:
    """Small JSON records, one per unfinished transfer, named by a digest of what identifies it:
    a session URL to resume an upload, the ETag of a download's `.part` file."""

    def __init__(self, kind: str):
        self.dir = state_dir() / kind

    def _path(self, identity: tuple) -> Path:
        return self.dir / (hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32] + ".json")

    def get(self, identity: tuple) -> dict | None:
        try:
            return json.loads(self._path(identity).read_text())
        except (OSError, ValueError):
            return None

    def put(self, identity: tuple, record: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(identity)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        temporary.replace(path)

    def forget(self, identity: tuple) -> None:
        self._path(identity).unlink(missing_ok=True)
