"""Search a bucket by any fragment of a key (GET /v1/files/{bucket}?q=), in both configurations:
from the index (three characters and more) or by walking keys (fewer), any case, keyset-paged,
under a prefix, and kept in step with uploads, replaces and deletes."""

from __future__ import annotations

import pytest

from tests.helpers import assert_error, put

KEYS = ["2024/Beach-Day.JPG", "2024/beach_notes.txt", "2024/city.png", "archive/BEACH.zip", "archive/100%.txt",
        "docs/a_b.md", "docs/ab.md", "docs/naïve café.txt", "x/y/z/deep-beach.bin"]


@pytest.fixture
def bucket(client):
    for key in KEYS:
        put(client, "s", key, b"data of " + key.encode())
    put(client, "other", "beach.txt", b"not in s")
    return "s"


def keys(client, query: str) -> list[str]:
    response = client.get(f"/v1/files/s?{query}")
    assert response.status_code == 200, response.data
    return [entry["key"] for entry in response.get_json()["data"]]


def test_fragments_anywhere_in_any_case(client, bucket):
    assert keys(client, "q=beach") == ["2024/Beach-Day.JPG", "2024/beach_notes.txt", "archive/BEACH.zip",
                                       "x/y/z/deep-beach.bin"]
    assert keys(client, "q=EACH-") == ["2024/Beach-Day.JPG"]
    assert keys(client, "q=ch_n") == ["2024/beach_notes.txt"]  # _ is a character, not a wildcard
    assert keys(client, "q=%25.t") == ["archive/100%.txt"]  # nor is %
    assert keys(client, "q=a_b") == ["docs/a_b.md"]
    assert keys(client, "q=ïve caf") == ["docs/naïve café.txt"]
    assert keys(client, "q=/y/") == ["x/y/z/deep-beach.bin"]
    assert keys(client, "q=nothing-like-it") == []


def test_short_fragments_are_found_too(client, bucket):
    assert keys(client, "q=ab") == ["docs/ab.md"]
    assert keys(client, "q=Z") == ["archive/BEACH.zip", "x/y/z/deep-beach.bin"]


def test_pages_and_prefixes(client, bucket):
    first = client.get("/v1/files/s?q=a&limit=3").get_json()
    assert len(first["data"]) == 3 and first["has_more"]
    rest = client.get(f"/v1/files/s?q=a&limit=100&cursor={first['next_cursor']}").get_json()
    everything = [e["key"] for e in first["data"] + rest["data"]]
    assert everything == sorted(k for k in KEYS if "a" in k.lower()) and not rest["has_more"]
    assert keys(client, "q=beach&prefix=2024/") == ["2024/Beach-Day.JPG", "2024/beach_notes.txt"]


def test_the_index_follows_every_change(client, bucket):
    client.delete("/v1/files/s/archive/BEACH.zip")
    put(client, "s", "new/beachball.png", b"ball")
    put(client, "s", "2024/city.png", b"replaced, same key")
    assert keys(client, "q=beach") == ["2024/Beach-Day.JPG", "2024/beach_notes.txt", "new/beachball.png",
                                       "x/y/z/deep-beach.bin"]
    assert keys(client, "q=city") == ["2024/city.png"]


@pytest.mark.parametrize("query, code", [("q=", "invalid_q"), ("q=%01x", "invalid_q"), ("q=" + "a" * 257, "invalid_q"),
                                         ("q=a&delimiter=/", "invalid_delimiter"), ("q=a&q=b", "invalid_q")])
def test_bad_searches(client, bucket, query, code):
    assert_error(client.get(f"/v1/files/s?{query}"), 400, code)


def test_an_unknown_bucket_is_404(client):
    assert_error(client.get("/v1/files/none?q=abc"), 404, "not_found")
