"""What the HTML pages show for a file, rendered by the test client."""

from __future__ import annotations

import re


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
