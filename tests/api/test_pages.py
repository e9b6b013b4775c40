"""What the HTML pages show for a file, rendered by the test client."""

from __future__ import annotations

import re

from tests.helpers import put


def test_a_csv_file_is_previewed_as_a_table_of_its_first_rows_escaped(client):
    rows = ["name,note"] + [f"row{index},<b>n{index}</b>" for index in range(150)]
    client.put("/v1/files/b/data.csv", data="\n".join(rows).encode(), content_type="text/csv")
    page = client.get("/b/b/data.csv").get_data(as_text=True)
    table = re.search(r'<table class="listing" data-testid="csv-preview">.*?</table>', page, re.S).group(0)
    assert "<th scope=\"col\">name</th>" in table and "<td>row0</td>" in table
    assert table.count("<tr>") == 100  # the header and 99 rows: the first 100
    assert "&lt;b&gt;n0&lt;/b&gt;" in table and "<b>n0</b>" not in table  # escaped, never markup
    assert "The first 100 rows" in page
    client.put("/v1/files/b/small.csv", data=b"a,b\n1,2\n", content_type="text/csv")
    small = client.get("/b/b/small.csv").get_data(as_text=True)
    assert "<td>1</td><td>2</td>" in small and "see all of it" not in small  # all of it shown
    client.put("/v1/files/b/notes.txt", data=b"a,b\n1,2\n", content_type="text/plain")
    assert 'data-testid="csv-preview"' not in client.get("/b/b/notes.txt").get_data(as_text=True)


def test_download_selected_needs_the_pages_own_form(client):
    """A POST (a selection does not fit in a URL): from another site it is refused, and without the
    page's CSRF token too; with it, the zip of what was selected, named relative to the folder."""
    import io
    import zipfile

    client.put("/v1/files/b/d/one.txt", data=b"1")
    client.put("/v1/files/b/d/two.txt", data=b"2")
    form = {"key": ["d/two.txt", "d/missing.txt"], "back": "d/"}
    evil = client.post("/b/b/zip", data=form, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and evil.mimetype == "text/html"
    assert client.post("/b/b/zip", data=form).status_code == 403  # no CSRF token
    page = client.get("/b/b/d/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post("/b/b/zip", data={**form, "csrf_token": token})
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.data))
    assert archive.namelist() == ["two.txt"] and archive.read("two.txt") == b"2"  # the missing one left out


def test_markdown_is_rendered_safely_with_its_source(client):
    text = ("# Notes\n\n<script>alert(1)</script>\n\n[bad](javascript:alert(1)) [good](https://example.com)\n\n"
            "![remote](https://tracker.example/p.png) ![local](pics/cat.png) ![out](../../../../v1/x.png)\n\n"
            "| a | b |\n|---|---|\n| 1 | 2 |\n")
    put(client, "b", "docs/readme.md", text.encode())
    page = client.get("/b/b/docs/readme.md").get_data(as_text=True)
    rendered = page.split('data-testid="markdown-preview">', 1)[1].split("</div>", 1)[0]
    assert "<h1>Notes</h1>" in rendered and "<td>1</td>" in rendered
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered
    assert "javascript:" not in rendered.replace("[bad](javascript:alert(1))", "")
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">good</a>' in rendered
    assert "tracker.example/p.png" in rendered and '<img src="https://tracker' not in rendered
    assert '<img src="/v1/content/b/docs/pics/cat.png" alt="local">' in rendered
    assert "/v1/x.png" not in rendered
    assert 'data-testid="markdown-source"' in page and "&lt;script&gt;alert(1)" in page.split("markdown-source")[1]


def test_text_files_of_unregistered_types_are_previewed_as_text(client):
    put(client, "b", "logs/app.log", b"2026-11-27 started\n<b>not bold</b>\n", mime_type="application/octet-stream")
    page = client.get("/b/b/logs/app.log").get_data(as_text=True)
    assert "2026-11-27 started" in page and "&lt;b&gt;not bold&lt;/b&gt;" in page
    put(client, "b", "data.bin", b"\x00\x01binary", mime_type="application/octet-stream")
    assert "No preview for application/octet-stream" in client.get("/b/b/data.bin").get_data(as_text=True)


def test_each_page_says_where_it_stands_in_the_folder(client):
    """"3–4 of 5": a folder counts once, the numbers follow Next and Previous and the last page,
    and a search page (results from the index) claims no position."""
    for key in ("a.txt", "b.txt", "c/1.txt", "c/2.txt", "d.txt", "e.txt"):
        put(client, "b", key, key.encode())

    def position(html: str) -> str:
        return re.search(r'data-testid="position">([^<]*)<', html)[1]

    first = client.get("/b/b/?limit=2").get_data(as_text=True)
    assert position(first) == "1–2 of 5"
    second = client.get(re.search(r'rel="next"\s+href="([^"]+)"', first)[1].replace("&amp;", "&"))
    assert position(second.get_data(as_text=True)) == "3–4 of 5"  # c/ counted once
    last = client.get(re.search(r'data-testid="last-page" href="([^"]+)"', first)[1].replace("&amp;", "&"))
    assert position(last.get_data(as_text=True)) == "4–5 of 5"
    assert position(client.get("/b/b/c/").get_data(as_text=True)) == "1–2 of 2"
    assert 'data-testid="position"' not in client.get("/b/b/?q=txt").get_data(as_text=True)
    put(client, "b", "f.txt", b"f")
    assert position(client.get("/b/b/?limit=2").get_data(as_text=True)) == "1–2 of 6"
