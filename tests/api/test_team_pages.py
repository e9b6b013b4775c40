"""Cross-site requests against the team's forms (My account, People, Tokens, a bucket's Access): a
POST without the page's CSRF token, with a made-up one, or with the attacker's own valid token from
their own session, changes nothing; the same POST with the page's token does change something (so
the refusals are not the form's data being wrong)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a much longer secret"


def page_token(client, path: str = "/account") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def sign_in(client, name: str) -> str:
    form = {"username": name, "password": PASSWORD, "csrf_token": page_token(client, "/login")}
    answer = client.post("/login", data=form)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return page_token(client)


def snapshot(app) -> dict:
    """Everything the forms could change."""
    from files_app.models import User, WebSession, db

    with app.app_context():
        people = app.extensions["files"].people
        with db.engine.connect() as connection:
            passwords = dict(connection.execute(select(User.username, User.password_hash)).all())
            sessions = connection.execute(select(WebSession.id_sha256)).scalars().all()
        return {"users": people.users(), "tokens": people.tokens(None, everyone=True),
                "grants": people.grants("team"), "passwords": passwords, "sessions": sorted(sessions)}


@pytest.fixture
def team(app, client):
    """ada (admin, signed in on `client`), bob (member, with a token), ada's bucket `team` where
    bob may read, and ada's own token."""
    with app.app_context():
        people, accounts = app.extensions["files"].people, app.extensions["files"].accounts
        ada = people.create_user("ada", PASSWORD)
        bob = people.create_user("bob", PASSWORD, "member")
        mine, _ = accounts.create_token("laptop", "read", user_id=ada.id, role="admin")
        his, _ = accounts.create_token("ci", "read", user_id=bob.id, role="member")
    token = sign_in(client, "ada")
    assert client.post("/buckets", data={"name": "team", "csrf_token": token}).status_code == 302
    assert client.post("/b/team/access", data={"user": "bob", "level": "read", "csrf_token": token}).status_code == 302
    return {"mine": mine, "his": his}


# Each form, in an order in which each one, sent properly, still has something to change.
FORMS = [
    ("/b/team/access", {"user": "bob", "level": "manage"}),
    ("/tokens/{his}/revoke", {}),
    ("/people/bob/role", {"role": "admin"}),
    ("/people/bob/disabled", {"disabled": "1"}),
    ("/people/bob/password", {"new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD}),
    ("/account/tokens", {"name": "new", "scope": "read"}),
    ("/account/tokens/{mine}/revoke", {}),
    ("/people", {"name": "cy", "password": PASSWORD, "role": "member"}),
    ("/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                           "repeat_password": NEW_PASSWORD}),
    ("/people/bob/delete", {}),
    ("/account/sign-out-everywhere", {}),
]


def test_every_team_form_refuses_a_post_without_the_pages_token(app, client, team):
    attacker = app.test_client()  # someone with an account of their own, and so a valid token of their own
    with app.app_context():
        app.extensions["files"].people.create_user("mallory", PASSWORD, "member")
    their_token = sign_in(attacker, "mallory")
    token = page_token(client)
    for path, form in FORMS:
        path = path.format(**team)
        before = snapshot(app)
        for forged in (None, "", "x" * 43, their_token):
            data = form if forged is None else {**form, "csrf_token": forged}
            answer = client.post(path, data=data)
            assert answer.status_code == 403, (path, forged, answer.status_code)
            assert "did not come from this site" in answer.get_data(as_text=True)
            assert snapshot(app) == before, (path, forged)
        answer = client.post(path, data={**form, "csrf_token": token})
        assert answer.status_code in (200, 302), (path, answer.status_code)
        assert snapshot(app) != before, f"{path} with the page's token changed nothing: the test is wrong"
    assert client.get("/account").status_code == 302  # signed out everywhere, at last


def test_the_token_secret_is_in_no_cookie_and_not_cached(app, client, team):
    """The secret is shown in the answer to the form only: not in a flash kept in the (signed, not
    secret) session cookie, and the page is not stored by the browser's cache."""
    answer = client.post("/account/tokens", data={"name": "once", "scope": "read", "csrf_token": page_token(client)})
    secret = re.search(r'value="(fsk_[^"]+)"', answer.get_data(as_text=True)).group(1)
    assert answer.headers["Cache-Control"] == "no-store"
    assert secret not in str(answer.headers)
    assert secret not in client.get("/account").get_data(as_text=True)


def test_a_member_cannot_open_the_admin_pages_or_another_buckets_access(app, client, team):
    member = app.test_client()
    sign_in(member, "bob")
    for path in ("/people", "/people/ada", "/tokens"):
        assert member.get(path).status_code == 403, path
    assert member.get("/b/team/access").status_code == 403  # bob may read team, not manage it
    token = page_token(member)
    answer = member.post(f"/tokens/{team['mine']}/revoke", data={"csrf_token": token})
    assert answer.status_code == 403
    answer = member.post(f"/account/tokens/{team['mine']}/revoke", data={"csrf_token": token})
    assert answer.status_code == 302  # refused in words: someone else's token is not found
    with app.app_context():
        tokens = app.extensions["files"].people.tokens(None, everyone=True)
    assert all(info.revoked_at is None for info in tokens)
    answer = member.post("/account/tokens", data={"name": "root", "scope": "admin", "csrf_token": token})
    assert answer.status_code == 302  # a member's token may not be an admin's
    with app.app_context():
        assert "root" not in [info.name for info in app.extensions["files"].people.tokens(None, everyone=True)]
    body = member.get("/activity").get_data(as_text=True)
    assert "activity-none" in body  # bob manages nothing: sees nothing, not even his own sign-in


def test_a_reader_is_not_offered_what_would_be_refused(app, client, runner):
    """A member who may only read a bucket sees no upload, new-folder, move, share or delete control
    on its pages; its writer sees them."""
    from tests.api.test_team import json_body, person, signed_in
    from tests.helpers import make_token

    admin = make_token(runner, "admin")
    owner = person(app, client, admin, "owner")
    person(app, client, admin, "reader")
    client.put("/v1/files/shared/docs/a.txt", data=b"a", headers=owner)
    client.put("/v1/files/shared/top.txt", data=b"t", headers=owner)
    assert client.put("/v1/grants/shared/reader", headers=owner, **json_body({"level": "read"})).status_code == 200
    controls = (b'data-testid="file-input"', b'data-testid="new-folder"', b'data-testid="delete-selected"',
                b'data-testid="row-delete"', b'data-testid="share-bucket"', b'data-testid="quota-open"')
    reader, _ = signed_in(app, "reader")
    page = reader.get("/b/shared/").data
    assert b'data-testid="read-only"' in page and not [c for c in controls if c in page]
    folder, file_page = reader.get("/b/shared/docs/").data, reader.get("/b/shared/docs/a.txt").data
    assert b'data-testid="move-folder"' not in folder and b'data-testid="delete-folder"' not in folder
    assert b'data-testid="delete"' not in file_page and b'data-testid="move"' not in file_page
    writer, _ = signed_in(app, "owner")
    page = writer.get("/b/shared/").data
    assert b'data-testid="read-only"' not in page and all(c in page for c in controls[:5])
