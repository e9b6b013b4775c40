"""Ctrl-C and SIGTERM stop the client, whatever signal dispositions it inherited.

A shell starts a background job of a non-interactive shell with SIGINT ignored, and Python then
installs no KeyboardInterrupt handler of its own: the client would ignore a person's Ctrl-C, send
the whole file and forget its resume record. So `files` installs its own handlers for both signals
at startup. Each raises `Interrupted` in the main thread (a KeyboardInterrupt, so code that handles
Ctrl-C handles SIGTERM the same way): a transfer stops at its next chunk and keeps what it needs to
resume, and the exit code is the shell's for that signal (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `exit_code` is 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def exit_code(interruption: KeyboardInterrupt) -> int:
    """A plain KeyboardInterrupt (no handler of ours was installed) counts as Ctrl-C."""
    return getattr(interruption, "exit_code", 128 + signal.SIGINT)


def _raise(signum: int, frame) -> None:
    raise Interrupted(signum)


@contextmanager
def handled() -> Iterator[None]:
    """Our handlers for SIGINT and SIGTERM while the block runs, the previous ones after it (for a
    caller that runs the command in its own process). Signals go to the main thread alone: called
    from another thread, this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
