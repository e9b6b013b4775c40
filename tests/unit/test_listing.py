"""Listing: key order, prefixes, folders by delimiter, cursor pages that cover everything once."""

from __future__ import annotations

import pytest

from files_app.errors import InvalidInput, NotFound
from files_app.models import Bucket, StoredObject, db
from files_app.services.objects import decode_cursor, encode_cursor, key_successor_bound

KEYS = [
    "B.txt", "a.txt", "docs/2024/q1.pdf", "docs/2024/q2.pdf", "docs/readme.md", "docs/zeta/x",
    "docs-old.txt", "img/cat.jpg", "img/dog.jpg", "z/ünïcode.txt", "zz", "日本/語.txt",
]


@pytest.fixture
def bucket(services):
    """Rows made directly: listing does not care how the bytes got there."""
    db.session.add(row := Bucket(name="b", created_at=0))
    db.session.flush()
    for index, key in enumerate(KEYS):
        db.session.add(StoredObject(bucket_id=row.id, key=key, blob_id=f"{index:032x}", mime_type="text/plain",
                                    size=index, sha256="0" * 64, created_at=index))
    db.session.commit()
    return "b"


def walk(objects, bucket, limit, **query):
    """Every page, following cursors; returns the entries in order and the page count."""
    entries, pages, cursor = [], 0, None
    while True:
        page = objects.list(bucket, limit=limit, cursor=cursor, **query)
        pages += 1
        assert len(page.objects) + len(page.prefixes) <= limit
        entries += [("file", o.key) for o in page.objects] + [("dir", p) for p in page.prefixes]
        cursor = page.next_cursor
        if cursor is None:
            return sorted(entries, key=lambda e: e[1]), pages


def test_keys_sort_bytewise(services, bucket):
    page = services.objects.list(bucket)
    assert [o.key for o in page.objects] == sorted(KEYS, key=lambda k: k.encode("utf-8"))
    assert page.objects[0].key == "B.txt" and page.next_cursor is None


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 100])
def test_pages_cover_every_key_once(services, bucket, limit):
    entries, pages = walk(services.objects, bucket, limit)
    assert [key for _, key in entries] == sorted(KEYS)
    assert pages == -(-len(KEYS) // limit)  # the last page knows it is the last


def test_prefix(services, bucket):
    page = services.objects.list(bucket, prefix="docs/")
    assert [o.key for o in page.objects] == ["docs/2024/q1.pdf", "docs/2024/q2.pdf", "docs/readme.md", "docs/zeta/x"]


@pytest.mark.parametrize("limit", [1, 2, 100])
def test_delimiter_folds_folders(services, bucket, limit):
    entries, _ = walk(services.objects, bucket, limit, delimiter="/")
    assert entries == [("file", "B.txt"), ("file", "a.txt"), ("file", "docs-old.txt"), ("dir", "docs/"),
                       ("dir", "img/"), ("dir", "z/"), ("file", "zz"), ("dir", "日本/")]
    inner, _ = walk(services.objects, bucket, limit, prefix="docs/", delimiter="/")
    assert inner == [("dir", "docs/2024/"), ("file", "docs/readme.md"), ("dir", "docs/zeta/")]


def test_unknown_bucket_and_bad_cursor(services, bucket):
    with pytest.raises(NotFound):
        services.objects.list("nope")
    with pytest.raises(InvalidInput):
        services.objects.list(bucket, cursor="%%%")
    with pytest.raises(InvalidInput):  # PostgreSQL's text cannot hold NUL: refused before any query
        services.objects.list(bucket, cursor=encode_cursor("a\x00"))


def test_cursor_round_trip():
    for key in ["a", "docs/ü/", "日本\x01"]:
        assert decode_cursor(encode_cursor(key)) == key


def test_successor_bound():
    assert key_successor_bound("docs/") == "docs0"
    assert key_successor_bound("a\ud7ff") == "a\ue000"
    assert key_successor_bound("a\U0010ffff") == "b"
    for key in ["docs/", "docs/x", "docs/\U0010ffff\U0010ffff"]:
        assert key < key_successor_bound("docs/")


@pytest.mark.parametrize("deployment", ["scaled"], indirect=True)
def test_200_000_files_on_postgresql_by_cursor(services):
    """200,000 rows made by PostgreSQL itself; cursor pages of 2,000 cover each key once, in order,
    and the folder view of the same bucket skips a folder's 2,000 keys in one seek. (A million
    keys are the benchmarks' `list_*` and `search_1m` rows: here they cost a minute of the suite.)"""
    from sqlalchemy import text

    count = 200_000
    bucket_id = db.session.execute(text(
        "INSERT INTO buckets (name, created_at, object_count, total_bytes, updated_at)"
        " VALUES ('big', 0, :count, 0, 0) RETURNING id"), {"count": count}).scalar_one()
    db.session.execute(text(
        "INSERT INTO objects (bucket_id, key, blob_id, mime_type, size, sha256, created_at)"
        " SELECT :bucket_id, 'd' || lpad((i % 100)::text, 2, '0') || '/f' || lpad(i::text, 7, '0'),"
        " md5(i::text), 'application/octet-stream', 1, repeat('0', 64), 0 FROM generate_series(0, :last) AS i"),
        {"bucket_id": bucket_id, "last": count - 1})
    db.session.commit()
    seen, pages, cursor, previous = 0, 0, None, ""
    while True:
        page = services.objects.list("big", limit=2_000, cursor=cursor)
        keys = [o.key for o in page.objects]
        assert keys == sorted(keys) and (not keys or keys[0] > previous)
        seen, pages, previous = seen + len(keys), pages + 1, keys[-1] if keys else previous
        cursor = page.next_cursor
        if cursor is None:
            break
    assert (seen, pages) == (count, 100)
    folders = services.objects.list("big", limit=1000, delimiter="/")
    assert folders.prefixes == [f"d{i:02}/" for i in range(100)] and folders.objects == []
    assert folders.next_cursor is None


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
@pytest.mark.parametrize("query", [{}, {"delimiter": "/"}, {"prefix": "docs/", "delimiter": "/"}, {"prefix": "d"}])
def test_the_previous_page_is_the_one_walked_before(services, bucket, limit, query):
    """From every page, `previous_cursor` leads back to the page before it, folders skipped whole as
    going forward; the first page has none, and the second leads to the first ("")."""
    pages, cursor = [], None
    while True:
        page = services.objects.list(bucket, limit=limit, cursor=cursor, **query)
        pages.append((cursor, [o.key for o in page.objects] + page.prefixes))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert services.objects.previous_cursor(bucket, limit=limit, cursor=None, **query) is None
    for index in range(1, len(pages)):
        back = services.objects.previous_cursor(bucket, limit=limit, cursor=pages[index][0], **query)
        assert (back == "") == (index == 1), (index, back)  # the first page is named as such
        page = services.objects.list(bucket, limit=limit, cursor=back or None, **query)
        assert [o.key for o in page.objects] + page.prefixes == pages[index - 1][1], (index, back)
        if index == 1:  # and from there, no page before it
            assert services.objects.previous_cursor(bucket, limit=limit, cursor=None, **query) is None


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 1000])
@pytest.mark.parametrize("query", [{}, {"delimiter": "/"}, {"prefix": "docs/", "delimiter": "/"}, {"prefix": "d"}])
def test_the_last_page_holds_the_last_entries(services, bucket, limit, query):
    """`last_cursor` opens a page of the last `limit` entries (folders whole), and nothing follows
    it; when everything fits on the first page there is no last page of its own."""
    entries, cursor = [], None
    while True:
        page = services.objects.list(bucket, limit=limit, cursor=cursor, **query)
        entries += sorted([o.key for o in page.objects] + page.prefixes)
        cursor = page.next_cursor
        if cursor is None:
            break
    last = services.objects.last_cursor(bucket, limit=limit, **query)
    if len(entries) <= limit:
        assert last is None
        return
    page = services.objects.list(bucket, limit=limit, cursor=last, **query)
    assert sorted([o.key for o in page.objects] + page.prefixes) == entries[-limit:]
    assert page.next_cursor is None


@pytest.mark.parametrize("limit", [1, 2, 5])
@pytest.mark.parametrize("query", [{}, {"delimiter": "/"}, {"prefix": "docs/", "delimiter": "/"}, {"prefix": "d"},
                                   {"prefix": "img/", "delimiter": "/"}])
def test_every_page_knows_where_it_stands(services, bucket, limit, query):
    """`position` of each page (by its cursor) is the count of entries walked before it, and the
    total is every entry the walk saw (a folder once), on both databases."""
    seen, cursor = 0, None
    positions = []
    while True:
        page = services.objects.list(bucket, limit=limit, cursor=cursor, **query)
        positions.append((services.objects.position(bucket, cursor=cursor, **query), seen))
        seen += len(page.objects) + len(page.prefixes)
        cursor = page.next_cursor
        if cursor is None:
            break
    for position, before in positions:
        assert (position.before, position.total) == (before, seen)
        assert position.before_exact and position.total_exact


@pytest.mark.parametrize("walk_cap, scan_cap", [(1000, 1000), (2, 1000), (2, 3)])
def test_counts_past_their_caps_fall_back_then_say_so(services, bucket, monkeypatch, walk_cap, scan_cap):
    """The walks (per entry) count exactly below their caps, and the scan (per key) below its own;
    past them all the numbers are lower bounds, marked so."""
    from files_app.services import counting

    monkeypatch.setattr(counting, "SHORT_WALK", 1)
    monkeypatch.setattr(counting, "WALK_CAP", {"sqlite": walk_cap, "postgresql": walk_cap})
    monkeypatch.setattr(counting, "SCAN_CAP", scan_cap)
    bucket_id, end = services.objects.bucket_id(bucket), "\U0010ffff"
    # docs/: 2024/ (two keys), readme.md, zeta/ = 3 entries; the page after readme.md has 2 before it.
    docs = counting.count_entries(bucket_id, "docs/", "/", "docs/readme.md\x01", "docs0")
    top = counting.count_entries(bucket_id, "", "/", "", end)  # B.txt a.txt docs/ docs-old.txt img/ z/ zz 日本/
    flat = counting.count_entries(bucket_id, "", None, "zz", end)  # every key an entry; zz and 日本/語.txt after
    if scan_cap > len(KEYS):  # the walk or the scan saw everything
        assert docs == (2, True, 3, True) and top == (0, True, 8, True)
        assert flat == (len(KEYS) - 2, True, len(KEYS), True)
    else:
        assert docs == (2, True, 3, False)  # 4 keys: the walk stops after 3 entries, the scan after 3 keys
        assert top == (0, True, 3, False)
        assert flat == (3, False, 3, False)  # "after the first 3" (zz is the 11th key)


@pytest.mark.parametrize("deployment", ["local"], indirect=True)  # EXPLAIN QUERY PLAN is SQLite's
def test_a_search_reads_the_index_first(services):
    """Matches first, then their rows: never a walk of the bucket's keys testing each (the plan
    SQLite picks for an IN subquery when it has no statistics)."""
    from files_app.services.search import _SQLITE_INDEXED

    with db.engine.connect() as connection:
        plan = connection.execute(db.text("EXPLAIN QUERY PLAN " + _SQLITE_INDEXED.text),
                                  {"phrase": '"abc"', "bucket_id": 1, "start": "", "upper": "z", "n": 10}).all()
    steps = [row[3] for row in plan]
    assert steps[0].startswith("SCAN f VIRTUAL TABLE"), steps
    assert any("INTEGER PRIMARY KEY" in step for step in steps), steps
