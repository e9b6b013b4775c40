"""The pages of the trash and of versions, rendered by the test client in both configurations: a
delete's Undo brings back exactly that delete; the Trash page lists, restores (each on_conflict),
deletes for good and empties, each for whom it is meant; a file's page shows its versions and
restores one; confirmations say what a delete does, with the trash on and off."""

from __future__ import annotations

import html
import json
import re

from files_app.services.kept import Retention
from tests.api.test_team import PASSWORD, csrf_of, signed_in
from tests.helpers import bearer, make_token, put

FORM_FIELD = r'name="{}" value="([^"]*)"'


def token(client, path: str = "/") -> str:
    return csrf_of(client.get(path))


def text(answer) -> str:
    return answer.get_data(as_text=True)


def flashes(page: str) -> list[str]:
    """The messages on a page, as their words (tags dropped, spaces squeezed)."""
    found = re.findall(r'data-testid="flash">(.*?)<button type="button" class="dismiss"', page, re.S)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", one)).split()) for one in found]


def undo_form(page: str) -> dict:
    """The fields of the Undo in the page's message, ready to send back."""
    form = re.search(r'<form method="post" action="([^"]+)" class="inline-form undo">(.*?)</form>', page, re.S)
    assert form, "no Undo in the message"
    fields = {name: html.unescape(re.search(FORM_FIELD.format(name), form[2])[1])
              for name in ("csrf_token", "deletion", "back")}
    return {"action": html.unescape(form[1]), **fields}


def keys(client, bucket: str) -> list[str]:
    return [entry["key"] for entry in client.get(f"/v1/files/{bucket}").get_json()["data"]]


def trash_keys(client, bucket: str) -> list[str]:
    return [entry["key"] for entry in client.get(f"/v1/trash/{bucket}").get_json()["data"]]


def content(client, bucket: str, key: str) -> bytes:
    return client.get(f"/v1/content/{bucket}/{key}").data


def test_undo_restores_exactly_that_delete_and_says_what_stayed(client):
    for key in ("a.txt", "b.txt", "c.txt", "docs/one.txt", "docs/deep/two.txt"):
        put(client, "b", key, key.encode())
    csrf = token(client, "/b/b/")
    assert text(client.post("/b/b/delete", data={"key": "a.txt", "csrf_token": csrf}, follow_redirects=True))
    page = text(client.post("/b/b/delete", data={"key": ["b.txt", "c.txt"], "back": "", "csrf_token": csrf},
                            follow_redirects=True))
    assert flashes(page) == ["Deleted 2 files · Undo"]
    undo = undo_form(page)
    assert keys(client, "b") == ["docs/deep/two.txt", "docs/one.txt"]
    put(client, "b", "c.txt", b"a new c")  # its name is taken again meanwhile
    answer = client.post(undo.pop("action"), data=undo, follow_redirects=True)
    assert answer.request.path == "/b/b/"
    assert flashes(text(answer)) == [
        "Restored 1 file. Open it",
        "1 file stayed in the trash: a file of the same name is there now (c.txt). Restore it from the trash, "
        "keeping both or replacing. Open the trash"]
    assert keys(client, "b") == ["b.txt", "c.txt", "docs/deep/two.txt", "docs/one.txt"]
    assert content(client, "b", "c.txt") == b"a new c"  # the new one was not replaced
    assert sorted(trash_keys(client, "b")) == ["a.txt", "c.txt"]  # the other delete is not undone
    again = client.post("/b/b/undo-delete", data=undo, follow_redirects=True)
    assert flashes(text(again))[-1].startswith("1 file stayed in the trash")

    # A folder: the confirmation says where its files go, and the Undo brings the folder back.
    confirm = text(client.get("/b/b/delete-folder?prefix=docs/"))
    assert "They go to the bucket's trash, kept there for 30 days" in confirm and "cannot be undone" not in confirm
    until = re.search(FORM_FIELD.format("until"), confirm)[1]
    page = text(client.post("/b/b/delete-folder", data={"prefix": "docs/", "until": until, "csrf_token": csrf},
                            follow_redirects=True))
    assert flashes(page) == ["Deleted 2 files in docs/ · Undo"]
    undo = undo_form(page)
    assert undo["back"] == "docs/"
    answer = client.post(undo.pop("action"), data=undo, follow_redirects=True)
    assert answer.request.path == "/b/b/docs/" and flashes(text(answer)) == ["Restored 2 files."]
    assert keys(client, "b") == ["b.txt", "c.txt", "docs/deep/two.txt", "docs/one.txt"]
    # The Undo is a form of the pages: without their token it does nothing.
    assert client.post("/b/b/undo-delete", data={"deletion": undo["deletion"]}).status_code == 403
    bad = client.post("/b/b/undo-delete", data={"deletion": "nope", "csrf_token": csrf}, follow_redirects=True)
    assert flashes(text(bad))[0].startswith("Nothing was restored: deletion is the id a delete answered")


def test_the_trash_page_lists_newest_first_and_restores_with_each_choice(client):
    put(client, "b", "n.txt", b"first")
    put(client, "b", "gone.txt", b"gone")
    csrf = token(client, "/b/b/")
    for key in ("n.txt", "gone.txt"):
        client.post("/b/b/delete", data={"key": key, "csrf_token": csrf})
    put(client, "b", "n.txt", b"second")
    client.post("/b/b/delete", data={"key": "n.txt", "csrf_token": csrf})
    put(client, "b", "n.txt", b"current")  # n.txt is taken: two of its deletes are in the trash
    bucket_page = text(client.get("/b/b/"))
    assert 'data-testid="bucket-trash"' in bucket_page
    usage = re.search(r'data-testid="usage">(.*?)</p>', bucket_page, re.S)[1]
    assert re.search(r'1 file,\s+7 B · <a href="/b/b/trash" data-testid="usage-kept">3 files, 15 B in trash and '
                     r"versions</a>", usage), usage

    page = text(client.get("/b/b/trash"))
    rows = re.findall(r'data-testid="trash-row" data-key="([^"]+)" data-id="(\d+)"', page)
    assert [key for key, _ in rows] == ["n.txt", "gone.txt", "n.txt"]  # newest first
    assert "nobody signed in" in page and "Deleted files stay here for 30 days" in page
    assert 'href="/v1/trash/b' in page  # its JSON twin
    ids = {key + str(index): int(entry) for index, (key, entry) in enumerate(rows)}
    first = client.get("/b/b/trash?limit=1")
    assert re.findall(r'data-testid="trash-row" data-key="([^"]+)"', text(first)) == ["n.txt"]
    after = html.unescape(re.search(r'data-testid="next-page" rel="next"\s+href="([^"]+)"', text(first))[1])
    assert re.findall(r'data-testid="trash-row" data-key="([^"]+)"', text(client.get(after))) == ["gone.txt"]

    def restore(ids_: list[int], choice: str) -> list[str]:
        answer = client.post("/b/b/trash/restore", data={"id": [str(i) for i in ids_], "on_conflict": choice,
                                                         "csrf_token": csrf}, follow_redirects=True)
        assert answer.request.path == "/b/b/trash"
        return flashes(text(answer))

    assert restore([ids["n.txt2"]], "skip")[0].startswith("1 file stayed in the trash: a file of the same name is "
                                                          "there now (n.txt)")
    assert restore([ids["n.txt2"]], "keep_both") == ["Restored 1 file (n.txt as n (1).txt). Open it"]
    assert content(client, "b", "n (1).txt") == b"first" and content(client, "b", "n.txt") == b"current"
    assert restore([ids["n.txt0"], ids["gone.txt1"]], "replace") == ["Restored 2 files."]
    assert content(client, "b", "n.txt") == b"second" and content(client, "b", "gone.txt") == b"gone"
    versions = client.get("/v1/versions/b/n.txt").get_json()["data"]
    assert [v["bytes"] for v in versions] == [len(b"current")]  # the replaced file became a version
    assert restore([], "keep_both") == ["Select the files first."]
    assert restore([ids["n.txt0"]], "keep_both") == ["Nothing to restore: those files left the trash meanwhile."]
    assert restore([ids["n.txt0"]], "merge")[0].startswith("Nothing was restored: on_conflict is one of")
    empty = text(client.get("/b/b/trash"))
    assert 'data-testid="trash-empty">The trash is empty.' in empty and 'data-testid="empty-trash"' not in empty


def team(app, client, runner, **people: str) -> dict:
    """A bucket `team` made by an admin's token (its headers, returned), and members granted the
    `people`'s levels in it (made through the service: one password hash each)."""
    owner = bearer(make_token(runner, "admin"))
    assert client.put("/v1/files/team", headers=owner).status_code == 201
    with app.app_context():
        for name in people:
            app.extensions["files"].people.create_user(name, PASSWORD, "member")
    for name, level in people.items():
        grant = client.put(f"/v1/grants/team/{name}", headers=owner, data=json.dumps({"level": level}))
        assert grant.status_code == 200, grant.data
    return owner


def test_only_who_may_manage_deletes_forever_or_empties_and_readers_see_no_trash(app, client, runner):
    owner = team(app, client, runner, writer="write", reader="read", manager="manage")
    for key in ("a.txt", "b.txt", "c.txt"):
        assert client.put(f"/v1/files/team/{key}", data=key.encode(), headers=owner).status_code == 200
    writer, writer_csrf = signed_in(app, "writer")
    assert writer.post("/b/team/delete", data={"key": ["a.txt", "b.txt"], "csrf_token": writer_csrf}).status_code == 302
    assert client.delete("/v1/files/team/c.txt", headers=owner).status_code == 200

    page = text(writer.get("/b/team/trash"))
    ids = re.findall(r'data-testid="trash-row" data-key="[^"]+" data-id="(\d+)"', page)
    assert len(ids) == 3 and "writer" in page  # who deleted them
    assert 'data-testid="purge-selected"' not in page and 'data-testid="empty-trash"' not in page
    assert 'data-testid="restore-selected"' in page
    assert writer.post("/b/team/trash/purge", data={"id": ids, "csrf_token": writer_csrf}).status_code == 403
    assert writer.get("/b/team/trash/empty").status_code == 403
    assert writer.post("/b/team/trash/empty", data={"csrf_token": writer_csrf}).status_code == 403
    assert len(client.get("/v1/trash/team", headers=owner).get_json()["data"]) == 3  # nothing went

    reader, reader_csrf = signed_in(app, "reader")
    bucket_page = text(reader.get("/b/team/"))
    assert 'data-testid="bucket-trash"' not in bucket_page
    assert '<span data-testid="usage-kept">3 files' in bucket_page  # what the quota counts, without a link
    assert reader.get("/b/team/trash").status_code == 403
    restore = {"id": ids[0], "on_conflict": "keep_both", "csrf_token": reader_csrf}
    assert reader.post("/b/team/trash/restore", data=restore).status_code == 403

    manager, manager_csrf = signed_in(app, "manager")
    page = text(manager.get("/b/team/trash"))
    assert 'data-testid="purge-selected"' in page and 'data-testid="empty-trash"' in page
    answer = manager.post("/b/team/trash/purge", data={"id": ids[0], "csrf_token": manager_csrf}, follow_redirects=True)
    assert flashes(text(answer)) == ["Deleted 1 file for good."]
    confirm = text(manager.get("/b/team/trash/empty"))
    assert "deleted for good" in confirm and 'data-testid="confirm-empty-trash"' in confirm
    answer = manager.post("/b/team/trash/empty", data={"csrf_token": manager_csrf}, follow_redirects=True)
    assert flashes(text(answer)) == ["Emptied the trash: 2 files deleted for good."]
    assert client.get("/v1/trash/team", headers=owner).get_json()["data"] == []
    assert 'data-testid="trash-empty"' in text(manager.get("/b/team/trash/empty"))


def test_the_file_page_shows_versions_and_restores_one(app, client, runner):
    for version in (b"one", b"two two", b"three 3 3"):
        put(client, "b", "doc.txt", version)
    page = text(client.get("/b/b/doc.txt"))
    assert page.count('data-testid="version-restore"') == 2
    rows = re.findall(r'data-testid="version-row" data-version="(\d+)">\s*<td>(\d+) B</td>', page)
    assert [size for _, size in rows] == ["7", "3"]  # newest first
    links = [html.unescape(link) for link in re.findall(r'data-testid="version-download" download="doc.txt"\s+'
                                                        r'href="([^"]+)"', page)]
    assert client.get(links[1]).data == b"one"
    assert client.get(links[1]).headers["Content-Disposition"].startswith("attachment")
    csrf = csrf_of(client.get("/b/b/doc.txt"))
    answer = client.post("/b/b/restore-version", data={"key": "doc.txt", "version": rows[1][0], "csrf_token": csrf},
                         follow_redirects=True)
    assert answer.request.path == "/b/b/doc.txt"
    assert flashes(text(answer)) == ["Restored an earlier version: it is the current file; the file it replaced "
                                     "is the newest version now."]
    assert content(client, "b", "doc.txt") == b"one"
    assert [v["bytes"] for v in client.get("/v1/versions/b/doc.txt").get_json()["data"]] == [9, 7]
    gone = client.post("/b/b/restore-version", data={"key": "doc.txt", "version": rows[1][0], "csrf_token": csrf},
                       follow_redirects=True)
    assert flashes(text(gone))[0].startswith("The version was not restored: no version")
    put(client, "b", "new.txt", b"new")
    assert 'data-testid="no-versions">None yet.' in text(client.get("/b/b/new.txt"))

    # Signed in: a reader downloads a version (the cookie is enough for a GET) but is not offered Restore.
    owner = team(app, client, runner, reader="read")
    for version in (b"old", b"new"):
        client.put("/v1/files/team/f.txt", data=version, headers=owner)
    reader, reader_csrf = signed_in(app, "reader")
    page = text(reader.get("/b/team/f.txt"))
    assert 'data-testid="version-restore"' not in page
    [(version, link)] = re.findall(r'data-version="(\d+)">.*?href="([^"]+)"', page, re.S)
    assert reader.get(html.unescape(link)).data == b"old"
    refused = reader.post("/b/team/restore-version", data={"key": "f.txt", "version": version,
                                                           "csrf_token": reader_csrf})
    assert refused.status_code == 403


def test_the_texts_say_what_a_delete_does_with_the_trash_on_and_off(app, client):
    put(client, "b", "f.txt", b"f")
    put(client, "b", "d/g.txt", b"g")
    trash_on = {"/b/b/": "They go to the trash for 30 days: Undo or the Trash brings them back.",
                "/b/b/f.txt": "It goes to the trash for 30 days: Undo or the Trash brings it back.",
                "/b/b/delete-folder?prefix=d/": "They go to the bucket's trash, kept there for 30 days"}
    for path, words in trash_on.items():
        page = text(client.get(path))
        assert words in page and "cannot be undone" not in page, path
    csrf = token(client, "/b/b/")

    app.extensions["files"].objects.retention = Retention(0, 0)
    for path in trash_on:
        page = text(client.get(path))
        assert "cannot be undone" in page and "trash for" not in page and "bucket's trash" not in page, path
    assert "keeps no earlier versions" in text(client.get("/b/b/f.txt"))
    page = text(client.post("/b/b/delete", data={"key": "f.txt", "csrf_token": csrf}, follow_redirects=True))
    assert flashes(page) == ["Deleted 1 file."] and 'data-testid="undo"' not in page
    assert client.get("/v1/trash/b").get_json()["data"] == []
    until = re.search(FORM_FIELD.format("until"), text(client.get("/b/b/delete-folder?prefix=d/")))[1]
    page = text(client.post("/b/b/delete-folder", data={"prefix": "d/", "until": until, "csrf_token": csrf},
                            follow_redirects=True))
    assert flashes(page) == ["Deleted 1 file in d/."]
    trash_page = text(client.get("/b/b/trash"))
    assert "its trash is off" in trash_page and "The trash is empty." in trash_page
