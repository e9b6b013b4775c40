"""Names, sizes, types and checksums: what is accepted and what gets a 400 or 413."""

from __future__ import annotations

import pytest

from files_app import validation
from files_app.errors import InvalidInput, TooLarge


@pytest.mark.parametrize("name", ["a", "images", "A-b_9", "x" * 63])
def test_good_buckets(name):
    assert validation.bucket_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 64, "a.b", "a/b", "a b", "ü", None, 5, "session:x"])
def test_bad_buckets(name):
    with pytest.raises(InvalidInput):
        validation.bucket_name(name)


@pytest.mark.parametrize("key", ["image123.jpg", "a/b/c.txt", "My Photos/Été 2024 (1).jpg", "日本語.txt",
                                 "x" * 1024, "ü" * 512, "..a", "a..", "a/.b", "#?%&=+"])
def test_good_keys(key):
    assert validation.object_key(key) == key


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/", "./a", "a/./b", "a/../b", "..", ".", "a\nb",
                                 "tab\there", "del\x7f", "x" * 1025, "ü" * 513, "\ud800", None, 7, ["a"]])
def test_bad_keys(key):
    with pytest.raises(InvalidInput):
        validation.object_key(key)


def test_sizes():
    assert validation.object_size(0, 10) == 0
    assert validation.object_size(10, 10) == 10
    for bad in (-1, 1.5, "10", True, None):
        with pytest.raises(InvalidInput):
            validation.object_size(bad, 10)
    with pytest.raises(TooLarge):
        validation.object_size(11, 10)


def test_mime_types():
    assert validation.mime_type("image/jpg", "x") == "image/jpg"
    assert validation.mime_type("text/plain; charset=utf-8", "x") == "text/plain; charset=utf-8"
    assert validation.mime_type(None, "photo.png") == "image/png"
    assert validation.mime_type("", "noext") == "application/octet-stream"
    for bad in ("text", "a/b/c", "text/html\r\nX-Evil: 1", 5, "x" * 300):
        with pytest.raises(InvalidInput):
            validation.mime_type(bad, "x")


def test_offset_header():
    assert validation.offset_header(None) is None
    assert validation.offset_header("0") == 0
    assert validation.offset_header("12345") == 12345
    for bad in ("-1", "1.0", "abc", "", " 1", "١"):
        with pytest.raises(InvalidInput):
            validation.offset_header(bad)


def test_checksum_header():
    assert validation.checksum_header("sha1 AAAA") == ("sha1", b"\x00\x00\x00")
    with pytest.raises(InvalidInput) as caught:
        validation.checksum_header("crc32 AAAA")
    assert caught.value.code == "unsupported_checksum"
    for bad in ("sha256", "sha256 !!!", "sha256 a b"):
        with pytest.raises(InvalidInput):
            validation.checksum_header(bad)


def test_list_parameters():
    assert validation.list_limit(None) == 1000
    assert validation.list_limit("10000") == 10000
    for bad in ("0", "10001", "-1", "x", ""):
        with pytest.raises(InvalidInput):
            validation.list_limit(bad)
    assert validation.list_delimiter("/") == "/"
    with pytest.raises(InvalidInput):
        validation.list_delimiter("\n")


@pytest.mark.parametrize("key", ["a\u200fb", "a\u061cb", "a\u2028b", "\ufeffa", "a\u200bb", "a\u00adb", "a\u2066b",
                                 "a\u3164b", "a\x85b", "a\U000e0020b"])
def test_keys_with_invisible_or_bidi_characters_are_refused_naming_the_character(key):
    with pytest.raises(InvalidInput) as caught:
        validation.object_key(key)
    character = next(c for c in key if c != "a" and c != "b")
    assert f"U+{ord(character):04X}" in caught.value.message and caught.value.code == "invalid_key"
    assert caught.value.extra["character"] == f"U+{ord(character):04X}"
    assert validation.object_key(key, new=False) == key  # stored under the older rule: still found


@pytest.mark.parametrize("key", ["👨\u200d👩\u200d👧.png", "می\u200cخواهم.txt", "❤\ufe0f.txt", "e\u0301té.txt"])
def test_keys_with_joiners_variation_selectors_and_combining_marks_are_names(key):
    assert validation.object_key(key) == key


def test_visible_names():
    assert validation.visible("report.txt") == "report.txt"
    assert validation.visible("a\u202eb\x07c\u200bd") == "a_b_c_d"
    assert validation.visible("👨\u200d👩.png") == "👨\u200d👩.png"
