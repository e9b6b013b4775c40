"""What a transfer shows: progress bars on a terminal (one per file in flight and a total), JSON
lines for scripts (`--json`), or nothing but errors and the summary when output is not a terminal."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


@dataclass
class Summary:
    started: float = field(default_factory=time.monotonic)
    files: int = 0
    bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


class Reporter:
    """Quiet: errors (stderr) and the summary line only."""

    def __init__(self) -> None:
        self.summary = Summary()
        self._lock = threading.Lock()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def add_total(self, size: int) -> None:
        pass

    def start(self, name: str, size: int) -> object:
        return name

    def advance(self, handle: object, moved: int) -> None:
        pass

    def resumed(self, handle: object, offset: int) -> None:
        pass

    def done(self, handle: object, name: str, size: int) -> None:
        with self._lock:
            self.summary.files += 1
            self.summary.bytes += size

    def failed(self, handle: object, name: str, reason: str) -> None:
        with self._lock:
            self.summary.failures.append((name, reason))
        print(f"files: {name}: {reason}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        s = self.summary
        seconds = time.monotonic() - s.started
        line = f"{s.files} files, {human(s.bytes)} in {seconds:.1f} s ({human(s.bytes / max(seconds, 1e-6))}/s)"
        if s.failures:
            line += f"; {len(s.failures)} failed"
        print(line, file=sys.stderr, flush=True)


class JsonReporter(Reporter):
    """One JSON object per line on stdout: start, resume, progress (every 4 MiB or half second per
    file, whichever comes first), done, error, and the summary."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, tuple[float, int]] = {}
        self._moved: dict[str, int] = {}

    def _emit(self, **event) -> None:
        with self._lock:
            print(json.dumps(event), flush=True)

    def start(self, name: str, size: int) -> object:
        self._moved[name] = 0
        self._emit(event="start", name=name, bytes=size)
        return name

    def resumed(self, handle: object, offset: int) -> None:
        self._emit(event="resume", name=handle, offset=offset)

    def advance(self, handle: object, moved: int) -> None:
        self._moved[handle] = self._moved.get(handle, 0) + moved
        now = time.monotonic()
        last_time, last_moved = self._last.get(handle, (0.0, 0))
        if now - last_time >= 0.5 or self._moved[handle] - last_moved >= 4 * 1024 * 1024:
            self._last[handle] = (now, self._moved[handle])
            self._emit(event="progress", name=handle, moved=self._moved[handle])

    def done(self, handle: object, name: str, size: int) -> None:
        super().done(handle, name, size)
        self._emit(event="done", name=name, bytes=size)

    def failed(self, handle: object, name: str, reason: str) -> None:
        with self._lock:
            self.summary.failures.append((name, reason))
        self._emit(event="error", name=name, reason=reason)

    def finish(self) -> None:
        s = self.summary
        self._emit(event="summary", files=s.files, bytes=s.bytes, seconds=round(time.monotonic() - s.started, 3),
                   failures=[{"name": name, "reason": reason} for name, reason in s.failures])


class BarsReporter(Reporter):
    """rich progress bars on stderr: a total, and one bar per file in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.console = Console(stderr=True)
        self.bars = Progress(TextColumn("{task.description}", style="bold"), BarColumn(), DownloadColumn(),
                             TransferSpeedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
        self.total: TaskID = self.bars.add_task("total", total=0)

    def __enter__(self) -> BarsReporter:
        self.bars.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.bars.stop()

    def add_total(self, size: int) -> None:
        self.bars.update(self.total, total=(self.bars.tasks[self.total].total or 0) + size)

    def start(self, name: str, size: int) -> object:
        return self.bars.add_task(_short(name), total=size)

    def advance(self, handle: object, moved: int) -> None:
        self.bars.advance(handle, moved)
        self.bars.advance(self.total, moved)

    def done(self, handle: object, name: str, size: int) -> None:
        super().done(handle, name, size)
        self.bars.remove_task(handle)

    def failed(self, handle: object, name: str, reason: str) -> None:
        with self._lock:
            self.summary.failures.append((name, reason))
        if handle is not None:
            self.bars.remove_task(handle)
        self.console.print(f"[red]{name}[/red]: {reason}")

    def finish(self) -> None:
        self.bars.stop()
        super().finish()


def reporter(json_events: bool) -> Reporter:
    if json_events:
        return JsonReporter()
    return BarsReporter() if sys.stderr.isatty() else Reporter()


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]
