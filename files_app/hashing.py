"""A sha256 whose state can be saved with a session and restored by any process or host.

Chunks of one upload may arrive at different workers; re-hashing the partial file for each
chunk would be quadratic. hashlib cannot export its state, but libcrypto's SHA256_CTX is a
plain struct (the same code hashlib runs, at the same speed), so we drive it through ctypes
and store its bytes in the session row next to the durable offset.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib


class _Sha256Ctx(ctypes.Structure):
    # openssl/sha.h: SHA256_CTX. Stable layout across OpenSSL 1.1 and 3.x.
    _fields_ = [
        ("h", ctypes.c_uint32 * 8),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_uint32 * 16),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


STATE_SIZE = ctypes.sizeof(_Sha256Ctx)


def _load_libcrypto() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypto")
    if name is None:
        raise OSError("libcrypto not found; install OpenSSL (libssl3)")
    lib = ctypes.CDLL(name)  # CDLL releases the GIL during each call
    for fn in ("SHA256_Init", "SHA256_Update", "SHA256_Final"):
        getattr(lib, fn).restype = ctypes.c_int
    lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    return lib


_lib = _load_libcrypto()


class ResumableSha256:
    """sha256 with `state()` / `from_state()`; `update` accepts bytes or memoryview of bytes."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: _Sha256Ctx | None = None):
        if ctx is None:
            ctx = _Sha256Ctx()
            _lib.SHA256_Init(ctypes.byref(ctx))
        self._ctx = ctx

    @classmethod
    def from_state(cls, state: bytes | None) -> ResumableSha256:
        if not state:
            return cls()
        if len(state) != STATE_SIZE:
            raise ValueError("saved sha256 state has the wrong size")
        return cls(_Sha256Ctx.from_buffer_copy(state))

    def update(self, data: bytes) -> None:
        _lib.SHA256_Update(ctypes.byref(self._ctx), data, len(data))

    def state(self) -> bytes:
        return bytes(self._ctx)

    def hexdigest(self) -> str:
        ctx = _Sha256Ctx.from_buffer_copy(self.state())  # Final destroys the context; keep ours
        out = ctypes.create_string_buffer(32)
        _lib.SHA256_Final(out, ctypes.byref(ctx))
        return out.raw.hex()


class NoDigest:
    """For bytes whose digest nobody reads: a tus partial upload or an OpenAI Upload's part is
    hashed once, with the rest of its file, when the parts are joined."""

    __slots__ = ()

    def update(self, data: bytes) -> None:
        pass

    def state(self) -> None:
        return None

    def hexdigest(self) -> str:
        return ""


def chunk_hasher(algorithm: str, data: bytes = b""):
    """A hashlib object for a per-chunk Upload-Checksum (sha256, sha1 or md5)."""
    return hashlib.new(algorithm, data, usedforsecurity=False)

