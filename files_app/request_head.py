"""What the worker's event loop needs to know of a request before a thread takes it: where its
headers end and how much of its body to read first (files_app/serving.py).

This is not a parser: it only has to be right about well-formed requests. Anything unusual (two
Content-Lengths, a length that is not a number, a coding other than chunked, folded or spaced
header names, bare LF line ends) goes to a thread at once, where gunicorn's own parser answers it as
it always has; the loop must never wait for bytes gunicorn would not wait for.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_CHUNK_LINE = 4096  # a chunk-size line (with extensions) longer than this is not one the loop waits for


class BodyPlan(NamedTuple):
    wanted: int  # body bytes to read before a thread takes the request (0: none, go now)
    chunked: bool  # the body's end is its last chunk and trailers, not a length
    expect_continue: bool = False  # the client waits for `100 Continue` before it sends the body


GO_NOW = BodyPlan(0, False)


def head_end(buffer: bytes | bytearray, start: int = 0) -> int | None:
    """The index just past the blank line that ends the header section, or None while it has not
    come. `start` skips what an earlier call has searched already (less the 3 bytes a separator
    split across two reads could have left). Bare-LF endings count too: gunicorn refuses them, and
    the loop must not wait for more."""
    start = max(start - 3, 0)
    ends = [found + len(mark) for mark in (b"\r\n\r\n", b"\n\n", b"\n\r\n")
            if (found := buffer.find(mark, start)) >= 0]
    return min(ends) if ends else None


def body_plan(head: bytes | bytearray, limit: int) -> BodyPlan:
    """How much of the body to read in the event loop: all of it when it is at most `limit` bytes,
    else its first `limit` bytes; none when the framing is one only gunicorn's parser should judge."""
    lines = bytes(head).split(b"\r\n")
    if any(b"\n" in line for line in lines):
        return GO_NOW  # a bare LF somewhere: gunicorn answers 400
    length: int | None = None
    chunked = expect = False
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or line[:1] in (b" ", b"\t") or name != name.strip():
            return GO_NOW  # obs-fold, a space before the colon, no colon: gunicorn answers 400
        name, value = name.lower(), value.strip()
        if name == b"expect":
            if expect or value.lower() != b"100-continue" or not lines[0].endswith(b" HTTP/1.1"):
                return GO_NOW
            expect = True
        elif name == b"transfer-encoding":
            if chunked or value.lower() != b"chunked":
                return GO_NOW
            chunked = True
        elif name == b"content-length":
            if length is not None or not value.isdigit():
                return GO_NOW
            length = int(value)
    if chunked:
        return GO_NOW if length is not None else BodyPlan(limit, True, expect)
    if expect and not length:
        return GO_NOW
    return BodyPlan(min(length or 0, limit), False, expect)


def body_complete(buffer: bytes | bytearray, end_of_head: int, plan: BodyPlan) -> bool:
    """Whether the loop has read what `plan` wants of the body that starts at `end_of_head` (for a
    chunked one: `plan.wanted` bytes, or its end, or framing gunicorn will refuse)."""
    if len(buffer) - end_of_head >= plan.wanted:
        return True
    return plan.chunked and _chunked_end(buffer, end_of_head) is not None


def _chunked_end(buffer: bytes | bytearray, start: int) -> int | None:
    """The index just past the end of the chunked body starting at `start` (its last chunk and
    trailer section); None while it has not all come; -1 when it is malformed."""
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None if len(buffer) - at < MAX_CHUNK_LINE else -1
        digits = bytes(buffer[at:line_end]).split(b";", 1)[0].strip()
        if not digits or digits.strip(b"0123456789abcdefABCDEF"):
            return -1
        size = int(digits, 16)
        at = line_end + 2
        if size == 0:
            while True:  # trailer lines, then the empty line
                line_end = buffer.find(b"\r\n", at)
                if line_end < 0:
                    return None
                if line_end == at:
                    return line_end + 2
                at = line_end + 2
        at += size + 2
        if at > len(buffer):
            return None
