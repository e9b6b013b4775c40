"""multipart/form-data read part by part as it arrives (Werkzeug's sans-IO decoder), so that a
file part streams into an upload like any body: no temp file, no bytes held beyond a read.

Werkzeug's own form parsing (`request.files`) would spool every file to disk before the view runs.
"""

from __future__ import annotations

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from .errors import IncompleteBody, InvalidInput, TooLarge, UnsupportedMediaType
from .request_io import RequestBody

READ_SIZE = 1024 * 1024
MAX_BUFFER = 4 * READ_SIZE  # headers or a preamble that never end are refused past this
MAX_PARTS = 100
MAX_FIELD_BYTES = 64 * 1024


class MultipartReader:
    def __init__(self, body: RequestBody, content_type: str | None):
        mimetype, options = parse_options_header(content_type or "")
        boundary = options.get("boundary", "")
        if mimetype != "multipart/form-data" or not boundary:
            raise UnsupportedMediaType("send multipart/form-data with a boundary")
        if len(boundary) > 70 or not boundary.isascii():
            raise InvalidInput("the multipart boundary must be at most 70 ASCII characters", "invalid_multipart")
        self._body = body
        self._decoder = MultipartDecoder(boundary.encode("ascii"), max_form_memory_size=MAX_BUFFER,
                                         max_parts=MAX_PARTS)
        self._current: Part | None = None
        self._ended = False

    def next_part(self) -> Part | None:
        """The next part (the one before is skipped if unread), or None after the last."""
        if self._current is not None:
            self._current.skip()
        while not self._ended:
            event = self._next_event()
            if isinstance(event, (Field, File)):
                filename = event.filename if isinstance(event, File) else None
                self._current = Part(self, event.name, filename, event.headers.get("Content-Type"))
                return self._current
            if isinstance(event, Epilogue):
                self._ended = True
        return None

    def _next_event(self):
        while True:
            try:
                event = self._decoder.next_event()
            except RequestEntityTooLarge:
                raise TooLarge(f"a multipart body may have at most {MAX_PARTS} parts and part headers of at most "
                               f"{MAX_BUFFER} bytes") from None
            except ValueError as error:  # includes a header that is not UTF-8
                raise IncompleteBody(f"the multipart body is malformed or ended early: {error}") from None
            if not isinstance(event, NeedData):
                return event
            data = self._body.read(READ_SIZE)
            try:
                self._decoder.receive_data(data or None)
            except RequestEntityTooLarge:
                raise TooLarge(f"multipart part headers may be at most {MAX_BUFFER} bytes") from None

    def _data(self) -> tuple[bytes, bool]:
        """The current part's next bytes, and whether more follow."""
        event = self._next_event()
        if not isinstance(event, Data):
            raise IncompleteBody("the multipart body is malformed")
        return event.data, event.more_data


class Part:
    """One part: a form field (`filename` None) or a file. Its bytes are read as a Body."""

    def __init__(self, reader: MultipartReader, name: str, filename: str | None, content_type: str | None):
        self.name, self.filename, self.content_type = name, filename, content_type
        self._reader, self._more, self._held = reader, True, b""

    def read(self, size: int) -> bytes:
        while not self._held and self._more:
            self._held, self._more = self._reader._data()
        data, self._held = self._held[:size], self._held[size:]
        return data

    def text(self) -> str:
        """A field's value (at most 64 KiB of UTF-8)."""
        value = b""
        while chunk := self.read(READ_SIZE):
            value += chunk
            if len(value) > MAX_FIELD_BYTES:
                raise InvalidInput(f"form field {self.name!r} is longer than {MAX_FIELD_BYTES} bytes",
                                   "invalid_multipart", param=self.name)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"form field {self.name!r} is not UTF-8", "invalid_multipart", param=self.name) from None

    def skip(self) -> None:
        while self.read(READ_SIZE):
            pass
