"""Settings from the environment (FILES_*), with safe defaults.

Every setting here is documented in the README's configuration table. The Flask config
keys are the environment variable names themselves, so `create_app({"FILES_DATA_DIR": ...})`
overrides exactly what `FILES_DATA_DIR=...` would.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB

# name -> (parser, default). Defaults are what `make serve` runs with.
_SETTINGS: dict[str, tuple[type, Any]] = {
    "FILES_HOST": (str, "127.0.0.1"),
    "FILES_PORT": (int, 8321),
    "FILES_DATA_DIR": (str, "./data"),
    "FILES_DATABASE_URL": (str, ""),  # empty: SQLite in the data dir
    "FILES_SESSION_TTL": (int, 86400),  # seconds of inactivity before a session expires
    "FILES_MAX_OBJECT_SIZE": (int, 1024 * GIB),
    "FILES_LEASE_TTL": (int, 30),  # seconds a dead writer can block a session
    "FILES_CHECKPOINT_BYTES": (int, 32 * MIB),  # make the offset durable this often
    "FILES_INLINE_MAX": (int, 64 * 1024),  # files up to this size live in the metadata database
    "FILES_RESERVED_SPACE": (int, GIB),  # disk space never promised to uploads (local storage)
    "FILES_DEFAULT_BUCKET": (str, "uploads"),  # tus uploads whose metadata names no bucket
    "FILES_OPENAI_BUCKET": (str, "openai"),  # where the OpenAI-compatible API keeps its files
    "FILES_CORS_ORIGINS": (str, ""),  # comma-separated origins allowed to call the API, or *
    "FILES_AUTH": (str, "auto"),  # auto: closed once a token or user exists; off: open (never off loopback)
    "FILES_HTTPS": (int, 0),  # 1 behind an HTTPS proxy: the session cookie is sent over HTTPS only
    "FILES_MAX_SESSIONS": (int, 1000),  # open upload sessions per token or user (429 above)
    "FILES_CLIENT_TIMEOUT": (int, 60),  # seconds a client may stall mid-body (or mid-download) before it is cut off
    "FILES_HEADER_TIMEOUT": (int, 10),  # seconds a request's headers may take, from their first byte
    "FILES_ALLOWED_HOSTS": (str, ""),  # comma-separated Host names served; empty: loopback + FILES_HOST; *: any
    "FILES_GC_INTERVAL": (int, 3600),  # seconds between the running server's gc passes (0: never)
    "FILES_SQLITE_BUSY_MS": (int, 15000),  # how long SQLite writers queue before a 503
    "FILES_SECRET_KEY": (str, ""),  # signs the UI's session cookie; empty: made once in the data dir
    "FILES_STORAGE": (str, "local"),  # local: the data dir; s3: an S3-compatible object store
    "FILES_S3_ENDPOINT": (str, ""),  # e.g. http://127.0.0.1:8333; empty: AWS's own for the region
    "FILES_S3_BUCKET": (str, "files"),  # made at the first start if missing
    "FILES_S3_ACCESS_KEY": (str, ""),  # empty: boto3's usual places (env, ~/.aws, instance role)
    "FILES_S3_SECRET_KEY": (str, ""),
    "FILES_S3_REGION": (str, "us-east-1"),
    "FILES_S3_PART_SIZE": (int, 8 * MIB),  # multipart part size; at least 5 MiB (S3's minimum)
    "FILES_S3_PRESIGN": (int, 0),  # 1: downloads redirect to a presigned URL on the object store
    "FILES_TRASH_DAYS": (int, 30),  # days a deleted file stays in its bucket's trash (0: a delete is forever)
    "FILES_VERSIONS": (int, 10),  # replaced versions kept per key (0: a replaced file is gone)
    "FILES_SCRUB_INTERVAL": (int, 0),  # seconds between background scrubs (as `files verify`; 0: none)
    "FILES_SCRUB_RATE": (int, 20),  # MB/s a background scrub reads at most
    "FILES_AUDIT_DAYS": (int, 365),  # days the audit log keeps an entry (gc prunes older ones; 0: forever)
    "FILES_METRICS": (str, "local"),  # /metrics: local (loopback, or an admin), admin (admins only), off
    "FILES_HOOKS_POLL_MS": (int, 1000),  # how often each worker looks for webhook deliveries due (0: it sends none)
    "FILES_HOOKS_TIMEOUT": (int, 10),  # seconds one webhook POST may take in all (connecting: at most 5)
    "FILES_HOOKS_BACKOFF_MS": (int, 10000),  # a failed delivery's first retry; doubling, at most an hour apart
    "FILES_HOOKS_RETRY_FOR": (int, 86400),  # seconds after its event a failing delivery is retried, then failed
    "FILES_WORKERS": (int, 2),
    "FILES_THREADS": (int, 1024),  # per worker; each request being served holds one
    "FILES_MAX_CONNECTIONS": (int, 10000),  # open connections per worker (idle, slow or served)
}


class ConfigError(ValueError):
    """A setting has a value that cannot be used; raised before anything starts."""


def _parse(name: str, kind: type, raw: Any) -> Any:
    if kind is int:
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{name} must not be negative, got {value}")
        return value
    return str(raw)


def load_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then the environment, then `overrides` (tests), each parsed and checked."""
    overrides = overrides or {}
    settings: dict[str, Any] = {}
    for name, (kind, default) in _SETTINGS.items():
        raw = overrides.get(name, os.environ.get(name, default))
        settings[name] = _parse(name, kind, raw)
    for name in ("FILES_TRASH_DAYS", "FILES_VERSIONS", "FILES_SCRUB_INTERVAL"):
        if settings[name] < 0:
            raise ConfigError(f"{name} must be 0 or more")
    if settings["FILES_SCRUB_RATE"] < 1:
        raise ConfigError("FILES_SCRUB_RATE must be at least 1 (MB/s)")
    if settings["FILES_LEASE_TTL"] < 1:
        raise ConfigError("FILES_LEASE_TTL must be at least 1 second")
    if settings["FILES_CHECKPOINT_BYTES"] < MIB:
        raise ConfigError("FILES_CHECKPOINT_BYTES must be at least 1 MiB")
    from .validation import bucket_name  # here: validation imports nothing from config

    bucket_name(settings["FILES_DEFAULT_BUCKET"])
    bucket_name(settings["FILES_OPENAI_BUCKET"])
    if settings["FILES_STORAGE"] not in ("local", "s3"):
        raise ConfigError("FILES_STORAGE must be 'local' or 's3'")
    if settings["FILES_S3_PART_SIZE"] < 5 * MIB:
        raise ConfigError("FILES_S3_PART_SIZE must be at least 5 MiB (5242880), S3's smallest part")
    if settings["FILES_METRICS"] not in ("local", "admin", "off"):
        raise ConfigError("FILES_METRICS must be 'local', 'admin' or 'off'")
    if settings["FILES_AUTH"] not in ("auto", "off"):
        raise ConfigError("FILES_AUTH must be 'auto' or 'off'")
    data_dir = Path(settings["FILES_DATA_DIR"]).resolve()
    settings["FILES_DATA_DIR"] = str(data_dir)
    if not settings["FILES_DATABASE_URL"]:
        settings["FILES_DATABASE_URL"] = f"sqlite:///{data_dir / 'files.db'}"
    # Anything else the caller passed (e.g. TESTING) goes through unchanged.
    for name, value in overrides.items():
        settings.setdefault(name, value)
    return settings
