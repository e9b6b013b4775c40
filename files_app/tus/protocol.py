"""tus 1.0.0 header grammar: versions, extensions, Upload-Metadata, Upload-Concat, lengths."""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from ..errors import InvalidInput
from ..models import SessionKind

VERSION = "1.0.0"
# Each is advertised because it is complete; see the README's tus section.
EXTENSIONS = ("creation", "creation-with-upload", "creation-defer-length", "expiration", "checksum",
              "termination", "concatenation")
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")
UPLOAD_CONTENT_TYPE = "application/offset+octet-stream"
MAX_METADATA_BYTES = 8192
_SESSION_PATH_RE = re.compile(r"/v1/files/session:([0-9a-f]{32})")


def parse_metadata(raw: str | None) -> dict[str, bytes]:
    """`key base64,key2 base64,flag` -> {key: bytes}. Keys unique, values base64 (may be empty)."""
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_METADATA_BYTES:
        raise InvalidInput(f"Upload-Metadata must be at most {MAX_METADATA_BYTES} bytes", "invalid_metadata")
    pairs: dict[str, bytes] = {}
    for item in raw.split(","):
        parts = item.strip().split(" ")
        key = parts[0]
        if not key or len(parts) > 2 or key in pairs:
            raise InvalidInput(f"Upload-Metadata has a malformed or repeated pair {item.strip()!r}",
                               "invalid_metadata")
        try:
            pairs[key] = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
        except (binascii.Error, ValueError):
            raise InvalidInput(f"Upload-Metadata value of {key!r} is not base64", "invalid_metadata") from None
    return pairs


def encode_metadata(pairs: dict[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items() if value)


def metadata_text(pairs: dict[str, bytes], *names: str) -> str | None:
    """The first of `names` present, as UTF-8 text."""
    for name in names:
        if name in pairs and pairs[name]:
            try:
                return pairs[name].decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"Upload-Metadata {name!r} is not UTF-8", "invalid_metadata") from None
    return None


def parse_length(raw: str, header: str = "Upload-Length") -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        raise InvalidInput(f"{header} must be a non-negative integer", "invalid_length")
    return int(raw)


def parse_concat(raw: str | None) -> tuple[str, list[str]]:
    """-> ("upload", []) without the header, ("partial", []), or ("final", [session ids in order])."""
    if raw is None:
        return SessionKind.UPLOAD, []
    if raw.strip() == "partial":
        return SessionKind.PARTIAL, []
    if not raw.startswith("final;"):
        raise InvalidInput("Upload-Concat must be 'partial' or 'final;<url> <url> ...'", "invalid_concat")
    ids = []
    for url in raw[len("final;"):].split():
        match = _SESSION_PATH_RE.fullmatch(urlsplit(url).path)
        if match is None:
            raise InvalidInput(f"{url!r} is not an upload URL of this server", "invalid_concat")
        ids.append(match.group(1))
    if not ids:
        raise InvalidInput("Upload-Concat: final names no partial uploads", "invalid_concat")
    return SessionKind.FINAL, ids
