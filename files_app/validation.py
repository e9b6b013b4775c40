"""Rules for names, sizes, types and checksums, in one place.

Everything here takes plain values and raises InvalidInput (400) or TooLarge (413).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
import unicodedata
from typing import Any

from .errors import InvalidInput, TooLarge

BUCKET_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")
MAX_KEY_BYTES = 1024
# type "/" subtype (RFC 6838 restricted names), then ";"-parameters whose values are RFC 9110 tokens or
# quoted strings of visible ASCII: whatever is stored can be sent back as a Content-Type header.
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e]|\\[\t\x20-\x7e])*"'
MIME_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    rf"(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*"
)
SHA256_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")
DEFAULT_MIME = "application/octet-stream"
CHECKSUM_ALGORITHMS = ("sha256", "sha1", "md5")
# C0 and C1 controls, DEL, and the bidi overrides/isolates that make a name display as another.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_C0_RE = re.compile("[\x00-\x1f\x7f]")  # what keys stored before the rule above could not hold
# Invisible in a name, or moving what follows: format characters (Cf: bidi marks and overrides, zero-width
# spaces, the BOM, soft hyphens, tags), line and paragraph separators, and the Hangul fillers that
# render as nothing. Kept: ZWNJ and ZWJ (Persian, Indic scripts and emoji sequences need them) and
# variation selectors (Mn, as combining marks are).
_INVISIBLE_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")
_JOINERS = frozenset("\u200c\u200d")
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")


def bucket_name(value: Any) -> str:
    if not isinstance(value, str) or not BUCKET_RE.fullmatch(value):
        raise InvalidInput(
            "bucket must be 1 to 63 characters of a-z, A-Z, 0-9, '_' and '-'", "invalid_bucket"
        )
    return value


def object_key(value: Any, *, new: bool = True) -> str:
    """Keys are column values, never paths; these rules keep them sane to show and to share.
    `new=False` looks up a key stored under the older rule (C0 controls only), so it stays reachable."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("key must be a non-empty string", "invalid_key")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("key must be valid UTF-8", "invalid_key") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidInput(f"key must be at most {MAX_KEY_BYTES} bytes of UTF-8", "invalid_key")
    if new:
        _refuse_invisible(value, "key", "invalid_key")
    elif found := _C0_RE.search(value):
        raise _refused(found.group(), "key", "invalid_key")
    if value.startswith("/"):
        raise InvalidInput("key must not start with '/'", "invalid_key")
    if any(segment in ("", ".", "..") for segment in value.split("/")):
        raise InvalidInput("key must not have empty, '.' or '..' segments", "invalid_key")
    return value


def _refuse_invisible(value: str, what: str, code: str, **extra: Any) -> None:
    """Refuse the first control, invisible or bidi character of `value`, naming it."""
    if found := _CONTROL_RE.search(value):
        raise _refused(found.group(), what, code, **extra)
    if value.isascii():
        return
    for character in value:
        if _invisible(character):
            raise _refused(character, what, code, **extra)


def _invisible(character: str) -> bool:
    return character in _FILLERS or (unicodedata.category(character) in _INVISIBLE_CATEGORIES
                                     and character not in _JOINERS)


def visible(value: str, replacement: str = "_") -> str:
    """`value` with each control, invisible or bidi character replaced: a stored name shown or sent in
    a header, whatever rule it was stored under."""
    return value if value.isascii() and value.isprintable() else "".join(
        replacement if _CONTROL_RE.match(character) or _invisible(character) else character for character in value)


def _refused(character: str, what: str, code: str, **extra: Any) -> InvalidInput:
    name = unicodedata.name(character, "control character")
    return InvalidInput(f"{what} must not contain U+{ord(character):04X} ({name}): control, invisible and bidi "
                        "characters make a name show as another", code, character=f"U+{ord(character):04X}", **extra)


MAX_SEARCH = 256


def search_query(value: Any) -> str:
    """A fragment of a key to search for: some text, no control characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("q must be a non-empty fragment of a key", "invalid_q")
    if len(value) > MAX_SEARCH or _CONTROL_RE.search(value):
        raise InvalidInput(f"q must be at most {MAX_SEARCH} characters, none of them control characters", "invalid_q")
    return value


def header_safe_mime(value: str) -> str:
    """A stored type as a Content-Type header: one stored before the rule above was strict (a
    value no header can carry) is served as bytes, never a 500."""
    return value if MIME_RE.fullmatch(value) else DEFAULT_MIME


def mime_type(value: Any, key: str) -> str:
    if value is None or value == "":
        guessed, _ = mimetypes.guess_type(key, strict=False)
        return guessed or DEFAULT_MIME
    if not isinstance(value, str) or len(value) > 255 or not MIME_RE.fullmatch(value):
        raise InvalidInput("mime_type must look like 'type/subtype'", "invalid_mime_type")
    return value


def object_size(value: Any, max_size: int) -> int:
    # bool is an int in Python; `true` is not a size.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("size must be an integer number of bytes", "invalid_size")
    if value < 0:
        raise InvalidInput("size must not be negative", "invalid_size")
    if value > max_size:
        raise TooLarge(f"size {value} is above the maximum object size {max_size}", max_size=max_size)
    return value


def sha256_hex(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SHA256_HEX_RE.fullmatch(value):
        raise InvalidInput("sha256 must be 64 hexadecimal characters", "invalid_sha256")
    return value.lower()


def offset_header(value: str | None) -> int | None:
    """The optional `Upload-Offset` header: a non-negative decimal integer."""
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise InvalidInput("Upload-Offset must be a non-negative integer", "invalid_offset")
    return int(value)


def if_none_match(value: str | None) -> bool:
    """`If-None-Match` on a creation (both dialects) or a PUT: only `*` (create, never replace) means
    something there; True when it is sent."""
    if value is None:
        return False
    if value.strip() != "*":
        raise InvalidInput("If-None-Match may only be '*' (create only if no file has this key)",
                           "invalid_precondition")
    return True


def checksum_header(value: str | None) -> tuple[str, bytes] | None:
    """`Upload-Checksum: <algorithm> <base64 digest>` -> (algorithm, digest bytes)."""
    if value is None:
        return None
    parts = value.strip().split(" ")
    if len(parts) != 2:
        raise InvalidInput("Upload-Checksum must be '<algorithm> <base64>'", "invalid_checksum")
    algorithm, encoded = parts[0].lower(), parts[1]
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidInput(
            f"unsupported checksum algorithm {algorithm!r}; use one of {', '.join(CHECKSUM_ALGORITHMS)}",
            "unsupported_checksum",
        )
    try:
        digest = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("Upload-Checksum digest must be base64", "invalid_checksum") from None
    return algorithm, digest


def sha256_header(value: str | None) -> str | None:
    """`X-Checksum-Sha256`: a whole file's sha256 in hex or (as S3 sends it) base64; checked by sha256_hex."""
    value = (value or "").strip()
    if len(value) == 44:
        try:
            return base64.b64decode(value, validate=True).hex()
        except (binascii.Error, ValueError):
            raise InvalidInput("X-Checksum-Sha256 must be 64 hex digits or base64", "invalid_sha256") from None
    return value or None


def list_limit(value: str | None, default: int = 1000, maximum: int = 10000) -> int:
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 9 or not 1 <= int(value) <= maximum:
        raise InvalidInput(f"limit must be an integer from 1 to {maximum}", "invalid_limit")
    return int(value)


def list_prefix(value: str | None) -> str:
    if not value:
        return ""
    if len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES or _CONTROL_RE.search(value):
        raise InvalidInput("prefix must be at most 1024 bytes without control characters", "invalid_prefix")
    return value


def list_delimiter(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) > 8 or _CONTROL_RE.search(value):
        raise InvalidInput("delimiter must be 1 to 8 printable characters", "invalid_delimiter")
    return value


OPENAI_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
OPENAI_EXPIRY_SECONDS = (3600, 2592000)  # what OpenAI allows for expires_after[seconds]
MAX_FILENAME_BYTES = 900  # an OpenAI file's key is "<id>/<filename>", which must fit a key


def openai_purpose(value: Any) -> str:
    if value not in OPENAI_PURPOSES:
        raise InvalidInput(f"purpose must be one of {', '.join(OPENAI_PURPOSES)}", "invalid_purpose", param="purpose")
    return value


def openai_expiry(anchor: Any, seconds: Any) -> int | None:
    """expires_after {anchor, seconds} -> seconds after creation, or None (never expires)."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidInput("expires_after[anchor] must be 'created_at'", "invalid_expires_after",
                           param="expires_after[anchor]")
    if isinstance(seconds, str) and seconds.isascii() and seconds.isdigit() and len(seconds) < 12:
        seconds = int(seconds)
    low, high = OPENAI_EXPIRY_SECONDS
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not low <= seconds <= high:
        raise InvalidInput(f"expires_after[seconds] must be an integer from {low} to {high}", "invalid_expires_after",
                           param="expires_after[seconds]")
    return seconds


def openai_filename(value: Any) -> str:
    """A file's name as given (OpenAI shows it back): any text but control characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("filename must be a non-empty string", "invalid_filename", param="filename")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        raise InvalidInput(f"filename must be at most {MAX_FILENAME_BYTES} bytes of UTF-8", "invalid_filename",
                           param="filename")
    if not _encodes(value):
        raise InvalidInput("filename must be UTF-8 without control characters", "invalid_filename", param="filename")
    _refuse_invisible(value, "filename", "invalid_filename", param="filename")
    return value


def key_name(filename: str) -> str:
    """The last segment of a key made from a file name: its base name, never '', '.' or '..'."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name if name not in ("", ".", "..") else "file"


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def form_number(text: str, name: str) -> int | None:
    """A whole number typed in a form ("1,000" allowed); empty: None."""
    value = text.strip().replace(",", "")
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and len(value) < 19):
        raise InvalidInput(f"{name} must be a whole number", f"invalid_{name}")
    return int(value)


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def byte_size(text: str, name: str) -> int | None:
    """A size as people write it: 1000, 512K, 10M, 20G, 1T (powers of 1024, "B" or "iB" after them
    allowed); empty or "none": no limit."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B").strip()
    if value in ("", "NONE"):
        return None
    number, unit = (value[:-1].strip(), value[-1]) if value[-1] in "KMGT" else (value, "")
    if not (number.isascii() and number.isdigit()) or len(number) > 19 or int(number) * _SIZE_UNITS[unit] >= 2**63:
        raise InvalidInput(f"{name} must be a size such as 1000, 512K, 10M or 20G", f"invalid_{name}")
    return int(number) * _SIZE_UNITS[unit]
