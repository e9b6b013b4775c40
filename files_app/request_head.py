"""What the worker's event loop needs to know of a request before a thread takes it: where its
headers end and how much of its body to read first (files_app/serving.py).

This is not a parser: it only has to be right about well-formed requests. Anything unusual (two
Content-Lengths, a length that is not a number, both framings) goes to a thread at once, where
gunicorn's own parser answers it as it always has.
"""

from __future__ import annotations

from typing import NamedTuple

CHUNKED_END = b"0\r\n\r\n"  # the last chunk of a chunked body without trailers


class BodyPlan(NamedTuple):
    wanted: int  # body bytes to read before a thread takes the request (0: none, go now)
    chunked: bool  # the body's end is its last chunk, not a length


GO_NOW = BodyPlan(0, False)


def head_end(buffer: bytes | bytearray, start: int = 0) -> int | None:
    """The index just past the blank line that ends the header section, or None while it has not
    come. `start` skips what an earlier call has searched already (less the 3 bytes a separator
    split across two reads could have left)."""
    start = max(start - 3, 0)
    ends = [found + len(mark) for mark in (b"\r\n\r\n", b"\n\n") if (found := buffer.find(mark, start)) >= 0]
    return min(ends) if ends else None


def body_plan(head: bytes | bytearray, limit: int) -> BodyPlan:
    """How much of the body to read in the event loop: all of it when it is at most `limit` bytes,
    else its first `limit` bytes; none when the client waits for `100 Continue` before sending it,
    or when the framing is one only gunicorn's parser should judge."""
    length: int | None = None
    chunked = False
    for line in bytes(head).split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name, value = name.strip().lower(), value.strip()
        if name == b"expect":
            return GO_NOW
        if name == b"transfer-encoding":
            chunked = True
        elif name == b"content-length":
            if length is not None or not value.isdigit():
                return GO_NOW
            length = int(value)
    if chunked:
        return GO_NOW if length is not None else BodyPlan(limit, True)
    return BodyPlan(min(length or 0, limit), False)


def body_complete(buffer: bytes | bytearray, end_of_head: int, plan: BodyPlan) -> bool:
    """Whether the loop has read what `plan` wants of the body that starts at `end_of_head`."""
    if len(buffer) - end_of_head >= plan.wanted:
        return True
    return plan.chunked and buffer.endswith(CHUNKED_END)
