"""Thumbnails of image files, in both configurations: made once and kept, made again for a replaced
file, gone with their file, and safe against what an attacker uploads (a decompression bomb, bytes
that only claim to be an image, a vector image)."""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image
from sqlalchemy import select

from files_app.models import Thumbnail, db
from tests.helpers import assert_error, put


def image_bytes(width: int, height: int, kind: str = "PNG", color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, kind)
    return out.getvalue()


def thumbnail_rows() -> list:
    with db.engine.connect() as connection:
        return connection.execute(select(Thumbnail.size, Thumbnail.data)).all()


def test_a_thumbnail_is_made_once_and_kept(client, services):
    put(client, "pics", "wide.png", image_bytes(1000, 500), "image/png")
    response = client.get("/v1/thumbnails/pics/wide.png?size=256")
    assert response.status_code == 200 and response.mimetype == "image/webp"
    assert Image.open(io.BytesIO(response.data)).size == (256, 128)
    assert response.headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in response.headers[
        "Content-Security-Policy"]
    assert [(size, len(data) > 0) for size, data in thumbnail_rows()] == [(256, True)]
    again = client.get("/v1/thumbnails/pics/wide.png?size=256", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    jpeg = put(client, "pics", "photo.jpg", image_bytes(3000, 2000, "JPEG"), "image/jpeg")
    assert jpeg and Image.open(io.BytesIO(client.get("/v1/thumbnails/pics/photo.jpg?size=128").data)).size == (128, 85)


def test_a_replaced_file_gets_a_new_thumbnail_and_a_deleted_one_takes_it_along(client, services):
    put(client, "pics", "a.png", image_bytes(300, 300, color=(255, 0, 0)), "image/png")
    red = client.get("/v1/thumbnails/pics/a.png?size=128").data
    put(client, "pics", "a.png", image_bytes(300, 300, color=(0, 0, 255)), "image/png")
    blue = client.get("/v1/thumbnails/pics/a.png?size=128").data
    assert Image.open(io.BytesIO(blue)).getpixel((5, 5))[2] > 200 and red != blue
    client.delete("/v1/files/pics/a.png")
    assert thumbnail_rows() == []


def bomb() -> bytes:
    """A PNG that claims 50,000 x 50,000 pixels (2.5 gigapixels): refused from its header, before
    a byte of it is decoded."""
    width = height = 50_000
    raw = zlib.compress(b"\x00" * (width // 8 + 1), 9)  # its first row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name, data, mime", [
    ("bomb.png", bomb(), "image/png"),
    ("fake.png", b"\x89PNG\r\n\x1a\nnot really", "image/png"),
    ("script.jpg", b"<script>alert(1)</script>", "image/jpeg"),
])
def test_what_cannot_be_read_safely_has_no_thumbnail_and_is_read_once(client, services, name, data, mime):
    put(client, "pics", name, data, mime)
    assert_error(client.get(f"/v1/thumbnails/pics/{name}"), 404, "not_found")
    assert [(size, data) for size, data in thumbnail_rows()] == [(256, b"")]  # remembered: never decoded again
    assert_error(client.get(f"/v1/thumbnails/pics/{name}"), 404, "not_found")


def test_other_files_and_sizes(client):
    put(client, "pics", "v.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml")
    put(client, "pics", "t.txt", b"text", "text/plain")
    put(client, "pics", "ok.png", image_bytes(10, 10), "image/png")
    assert_error(client.get("/v1/thumbnails/pics/v.svg"), 404, "not_found")
    assert_error(client.get("/v1/thumbnails/pics/t.txt"), 404, "not_found")
    assert_error(client.get("/v1/thumbnails/pics/missing.png"), 404, "not_found")
    for size in ("100", "²", "-1"):
        assert_error(client.get(f"/v1/thumbnails/pics/ok.png?size={size}"), 400, "invalid_size")
    assert Image.open(io.BytesIO(client.get("/v1/thumbnails/pics/ok.png?size=512").data)).size == (10, 10)


def test_pages_may_ask_for_a_placeholder_instead_of_a_404(client):
    put(client, "pics", "fake.png", b"not an image", "image/png")
    placeholder = client.get("/v1/thumbnails/pics/fake.png?fallback=1")
    assert placeholder.status_code == 200 and Image.open(io.BytesIO(placeholder.data)).size == (1, 1)
    assert client.get("/v1/thumbnails/pics/none.png?fallback=1").status_code == 200
    assert_error(client.get("/v1/thumbnails/pics/fake.png?fallback=1&size=3"), 400, "invalid_size")


class _Slots:
    """Stands in for the decoder slots: says whether one is held, and logs when."""

    def __init__(self, events: list, on_enter=None):
        self.events, self.on_enter, self.held = events, on_enter, 0

    def __enter__(self):
        self.events.append("slot")
        self.held += 1
        if self.on_enter:
            self.on_enter()

    def __exit__(self, *exc_info):
        self.held -= 1
        self.events.append("slot released")


class _WatchedSource:
    """A source's bytes that log every read and fail it when no decoder slot is held."""

    def __init__(self, stream, slots: _Slots):
        self.stream, self.slots, self.can_sendfile = stream, slots, stream.can_sendfile

    def read(self, size: int = -1) -> bytes:
        assert self.slots.held, "the source was read before a decoder slot was held"
        self.slots.events.append("read")
        return self.stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        return self.stream.tell()

    def close(self) -> None:
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _watch_sources(services, monkeypatch, slots: _Slots) -> list:
    from files_app.services import thumbnails

    monkeypatch.setattr(thumbnails, "DECODERS", slots)
    real_open, opened = services.objects.open, []

    def watched_open(bucket, key):
        assert slots.held, "the source was opened before a decoder slot was held"
        opened.append(key)
        info, stream = real_open(bucket, key)
        return info, _WatchedSource(stream, slots)

    monkeypatch.setattr(services.objects, "open", watched_open)
    return opened


@pytest.mark.parametrize("name, width", [("big.png", 700), ("inline.png", 20)])  # a blob file; kept inline
def test_the_source_is_opened_and_read_only_while_a_decoder_slot_is_held(client, services, monkeypatch, name,
                                                                         width):
    """Memory bounded by design: however many thumbnails are asked for at once, only as many sources
    as there are decoders are in memory (it failed before: the whole source was read, then the slot
    waited for)."""
    from PIL import ImageDraw

    image = Image.effect_noise((width, width), 64).convert("RGB")
    ImageDraw.Draw(image).rectangle((0, 0, width // 2, width // 2), fill=(0, 200, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    put(client, "pics", name, out.getvalue(), "image/png")
    events = []
    opened = _watch_sources(services, monkeypatch, _Slots(events))
    response = client.get(f"/v1/thumbnails/pics/{name}?size=128")
    assert response.status_code == 200 and Image.open(io.BytesIO(response.data)).size == (min(width, 128),) * 2
    assert opened == [name] and events[0] == "slot" and events[-1] == "slot released"
    assert "read" in events and events.count("slot") == 1


def test_a_request_that_waited_for_a_slot_takes_the_thumbnail_made_meanwhile(client, services, monkeypatch):
    """Thirty requests for one new thumbnail decode it once: each looks again once it holds a slot."""
    put(client, "pics", "one.png", image_bytes(400, 300), "image/png")
    made_meanwhile, entered = [], []

    def another_request_finished_first():
        if not entered:  # the first to hold a slot is the other request (its own entry does nothing)
            entered.append(True)
            made_meanwhile.append(client.get("/v1/thumbnails/pics/one.png?size=128").data)

    slots = _Slots([], on_enter=another_request_finished_first)
    opened = _watch_sources(services, monkeypatch, slots)
    response = client.get("/v1/thumbnails/pics/one.png?size=128")
    assert response.status_code == 200 and response.data == made_meanwhile[0]
    assert opened == ["one.png"]  # decoded by the first request only
