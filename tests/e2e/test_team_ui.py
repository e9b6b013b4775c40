"""The team's pages in Chromium against a real gunicorn server: People (an admin adds a member),
My account (a token shown once and revoked, a password changed, sign out everywhere), a bucket's
Access page (a grant makes a bucket appear on the member's buckets page), Tokens and Activity;
axe clean in light and dark."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from files_app import create_app
from files_app.schema import upgrade_database
from tests.e2e.conftest import SCREENSHOTS

pytestmark = pytest.mark.e2e
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a much longer secret"


@pytest.fixture
def team(server_factory, tmp_path):
    """A closed service from its first request: ada, its first person (an admin), is made before the
    server starts (a worker that has not seen her yet would take the service as open for a second)."""
    app = create_app({"FILES_DATA_DIR": str(tmp_path / "data"), "FILES_DATABASE_URL": ""})
    upgrade_database(app)
    with app.app_context():
        from files_app.models import db

        app.extensions["files"].people.create_user("ada", PASSWORD)
        db.session.remove()
        db.engine.dispose()
    return server_factory().start()


def browser_page(browser, scheme: str = "light", viewport=(1280, 800)):
    """A context of its own (its own cookies: another person, or another browser of the same one),
    whose page records console errors like the `page` fixture's."""
    context = browser.new_context(color_scheme=scheme, viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    return context, page


def sign_in(page, server, name: str, password: str = PASSWORD) -> None:
    page.goto(server.url + "/login")
    page.fill("#username", name)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("[data-testid=sign-in]")
    expect(page.locator("[data-testid=who-name]")).to_have_text(name)


def add_person(page, server, name: str, role: str = "member") -> None:
    page.goto(server.url + "/people")
    page.fill("[data-testid=person-name]", name)
    page.fill("[data-testid=person-password]", PASSWORD)
    page.select_option("[data-testid=person-role]", role)
    with page.expect_navigation():
        page.click("[data-testid=person-create]")
    expect(page.locator("[data-testid=person-title]")).to_have_text(name)
    expect(page.locator("[data-testid=flash]").first).to_contain_text(f"{name} can sign in now")


def confirm(page, button) -> None:
    """Click a button that asks first, and say yes in the page's dialog."""
    button.click()
    expect(page.locator("#confirm")).to_be_visible()
    with page.expect_navigation():
        page.click("[data-testid=confirm-delete]")


def make_bucket(page, server, name: str) -> None:
    page.goto(server.url + "/")
    page.fill("#new-bucket", name)
    with page.expect_navigation():
        page.click("[data-testid=create-bucket]")
    expect(page).to_have_url(re.compile(f"/b/{name}/$"))


def api_status(server, path: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(server.url + path, headers=headers)) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def axe_clean(page, name: str) -> None:
    page.evaluate(AXE.read_text())  # through DevTools: the page's CSP rightly forbids inline scripts
    violations = page.evaluate("async () => (await axe.run()).violations.map(v => v.id + ': ' + v.help)")
    assert violations == [], (name, violations)


def test_the_first_person_made_on_people_is_an_admin_and_closes_the_service(page, server_factory):
    # One worker: the one that made the person knows at once that the service is closed.
    server = server_factory(FILES_WORKERS="1").start()
    page.goto(server.url + "/account")
    expect(page.locator("[data-testid=account-nobody]")).to_contain_text("this service is open")
    page.click("[data-testid=people-link]")
    expect(page.locator("[data-testid=person-role]")).to_have_count(0)  # the first is an admin, whatever
    page.fill("[data-testid=person-name]", "root")
    page.fill("[data-testid=person-password]", PASSWORD)
    with page.expect_navigation():
        page.click("[data-testid=person-create]")
    expect(page).to_have_url(re.compile("/login"))
    expect(page.locator("[data-testid=flash]")).to_contain_text("root is the first person, so an admin")
    expect(page.locator("[data-testid=open-banner]")).to_have_count(0)
    sign_in(page, server, "root")
    expect(page.locator("[data-testid=who-role]")).to_have_text("admin")
    expect(page.locator("[data-testid=people-link]")).to_be_visible()
    assert api_status(server, "/v1/files") == 401


def test_a_member_made_on_people_makes_a_token_sees_it_once_and_revokes_it(page, team, browser):
    sign_in(page, team, "ada")
    expect(page.locator("[data-testid=who-role]")).to_have_text("admin")
    add_person(page, team, "bob")
    context, bob = browser_page(browser)
    sign_in(bob, team, "bob")
    expect(bob.locator("[data-testid=who-role]")).to_have_text("member")
    expect(bob.locator("[data-testid=people-link]")).to_have_count(0)
    bob.click("[data-testid=my-account]")
    assert bob.locator("[data-testid=token-scope] option").all_inner_texts() == ["read", "write", "manage"]
    bob.fill("[data-testid=token-name]", "laptop")
    bob.select_option("[data-testid=token-scope]", "write")
    bob.fill("[data-testid=token-days]", "30")
    with bob.expect_navigation():
        bob.click("[data-testid=token-create]")
    secret = bob.locator("[data-testid=token-secret]").input_value()
    assert re.fullmatch(r"fsk_[A-Za-z0-9_-]{43}", secret)
    assert api_status(team, "/v1/files", secret) == 200
    bob.click("[data-testid=back-to-account]")
    row = bob.locator("[data-testid=token-row][data-name=laptop]")
    expect(row).to_have_attribute("data-state", "active")
    expect(row.locator("[data-testid=token-last-used]")).to_contain_text("127.0.0.1")  # the request just made
    assert secret not in bob.content()  # shown once: never again
    confirm(bob, row.locator("[data-testid=token-revoke]"))
    expect(bob.locator("[data-testid=flash]").first).to_contain_text("Token laptop is revoked")
    expect(row).to_have_attribute("data-state", "revoked")
    assert api_status(team, "/v1/files", secret) == 401
    page.click("[data-testid=tokens-link]")  # the admin sees it, whose it is, and that it is revoked
    listed = page.locator("[data-testid=token-row][data-name=laptop]")
    expect(listed).to_contain_text("bob")
    expect(listed).to_have_attribute("data-state", "revoked")
    bob.goto(team.url + "/people")  # not a member's page
    expect(bob.locator("h1")).to_have_text("Not allowed")
    assert all("403" in error for error in bob.console_errors)
    context.close()


def test_an_admin_revokes_anyones_token_from_tokens(page, team, browser):
    sign_in(page, team, "ada")
    add_person(page, team, "bob")
    context, bob = browser_page(browser)
    sign_in(bob, team, "bob")
    bob.goto(team.url + "/account")
    bob.fill("[data-testid=token-name]", "ci")
    with bob.expect_navigation():
        bob.click("[data-testid=token-create]")
    secret = bob.locator("[data-testid=token-secret]").input_value()
    assert api_status(team, "/v1/files", secret) == 200
    page.goto(team.url + "/tokens")
    confirm(page, page.locator("[data-testid=token-row][data-name=ci] [data-testid=token-revoke]"))
    expect(page.locator("[data-testid=token-row][data-name=ci]")).to_have_attribute("data-state", "revoked")
    assert api_status(team, "/v1/files", secret) == 401
    bob.goto(team.url + "/account")
    expect(bob.locator("[data-testid=token-row][data-name=ci]")).to_have_attribute("data-state", "revoked")
    assert bob.console_errors == []
    context.close()


def test_a_password_change_keeps_this_browser_and_ends_the_others(page, team, browser):
    sign_in(page, team, "ada")
    add_person(page, team, "bob")
    here_context, here = browser_page(browser)
    there_context, there = browser_page(browser)
    sign_in(here, team, "bob")
    sign_in(there, team, "bob")
    here.goto(team.url + "/account")
    expect(here.locator("[data-testid=session-row]")).to_have_count(2)
    expect(here.locator("[data-testid=session-row][data-current=true] [data-testid=this-browser]")).to_have_count(1)
    for current in ("not my password", PASSWORD):
        here.fill("[data-testid=current-password]", current)
        here.fill("[data-testid=new-password]", NEW_PASSWORD)
        here.fill("[data-testid=repeat-password]", NEW_PASSWORD)
        with here.expect_navigation():
            here.click("[data-testid=change-password]")
    flashes = here.locator("[data-testid=flash]")
    expect(flashes.first).to_contain_text("Password changed")
    expect(here.locator("[data-testid=session-row]")).to_have_count(1)  # this browser stays signed in
    there.goto(team.url + "/account")
    expect(there).to_have_url(re.compile("/login"))
    sign_in(there, team, "bob", NEW_PASSWORD)
    here.goto(team.url + "/activity")  # bob manages no bucket: nothing to see, said in words
    expect(here.locator("[data-testid=activity-none]")).to_be_visible()
    page.goto(team.url + "/activity?action=user.password")  # the wrong guess, then the change
    expect(page.locator("[data-testid=activity-row]")).to_have_count(2)
    expect(page.locator("[data-testid=activity-row]").first).to_contain_text("bob")
    assert here.console_errors == [] and there.console_errors == []
    here_context.close()
    there_context.close()


def test_a_grant_on_access_shows_the_bucket_to_a_member(page, team, browser):
    sign_in(page, team, "ada")
    add_person(page, team, "bob")
    make_bucket(page, team, "team")
    context, bob = browser_page(browser)
    sign_in(bob, team, "bob")
    expect(bob.locator("[data-testid=bucket-row][data-bucket=team]")).to_have_count(0)
    page.goto(team.url + "/b/team/")
    page.click("[data-testid=bucket-access]")
    expect(page.locator("[data-testid=no-grants]")).to_be_visible()
    page.fill("[data-testid=grant-user]", "bob")
    page.select_option("[data-testid=grant-level]", "read")
    with page.expect_navigation():
        page.click("[data-testid=grant-save]")
    expect(page.locator("[data-testid=grant-row][data-user=bob]")).to_have_attribute("data-level", "read")
    bob.reload()
    expect(bob.locator("[data-testid=bucket-row][data-bucket=team]")).to_have_count(1)
    bob.goto(team.url + "/b/team/")
    expect(bob.locator("[data-testid=bucket-access]")).to_have_count(0)  # read: not theirs to manage
    page.select_option("[data-testid=grant-row][data-user=bob] [data-testid=grant-change-level]", "manage")
    with page.expect_navigation():
        page.click("[data-testid=grant-row][data-user=bob] [data-testid=grant-change]")
    expect(page.locator("[data-testid=grant-row][data-user=bob]")).to_have_attribute("data-level", "manage")
    bob.reload()
    bob.click("[data-testid=bucket-access]")  # manage: bob gives access himself now
    expect(bob.locator("[data-testid=grant-row][data-user=bob]")).to_have_count(1)
    confirm(page, page.locator("[data-testid=grant-row][data-user=bob] [data-testid=grant-remove]"))
    expect(page.locator("[data-testid=no-grants]")).to_be_visible()
    bob.goto(team.url + "/")
    expect(bob.locator("[data-testid=bucket-row][data-bucket=team]")).to_have_count(0)
    assert bob.console_errors == []
    context.close()


def test_sign_out_everywhere_ends_every_browser(page, team, browser):
    sign_in(page, team, "ada")
    add_person(page, team, "bob")
    contexts = [browser_page(browser) for _ in range(2)]
    (_, first), (_, second) = contexts
    sign_in(first, team, "bob")
    sign_in(second, team, "bob")
    first.goto(team.url + "/account")
    expect(first.locator("[data-testid=session-row]")).to_have_count(2)
    confirm(first, first.locator("[data-testid=sign-out-everywhere]"))
    expect(first).to_have_url(re.compile("/login"))
    expect(first.locator("[data-testid=flash]")).to_contain_text("Signed out everywhere (2 browsers)")
    second.goto(team.url + "/account")
    expect(second).to_have_url(re.compile("/login"))
    page.goto(team.url + "/account")  # ada's browser is hers, not bob's: still signed in
    expect(page.locator("[data-testid=who-name]")).to_have_text("ada")
    for context, _ in contexts:
        context.close()


def test_activity_shows_who_did_what_filters_and_pages(page, team, browser):
    sign_in(page, team, "ada")
    add_person(page, team, "bob")
    add_person(page, team, "cy")
    context, bob = browser_page(browser)
    sign_in(bob, team, "bob")
    make_bucket(bob, team, "bobs")  # a member's bucket is his: he manages it
    bob.click("[data-testid=bucket-access]")
    bob.fill("[data-testid=grant-user]", "cy")
    with bob.expect_navigation():
        bob.click("[data-testid=grant-save]")
    page.click("[data-testid=activity-link]")
    rows = page.locator("[data-testid=activity-row]")
    expect(rows.first).to_be_visible()
    actions = set(rows.evaluate_all("rows => rows.map(row => row.dataset.action)"))
    assert {"user.create", "signin", "grant"} <= actions, actions
    page.select_option("[data-testid=filter-action]", "user")  # every user.* action
    with page.expect_navigation():
        page.click("[data-testid=filter-apply]")
    expect(rows).to_have_count(3)  # ada (made before the server started), bob and cy
    assert set(rows.evaluate_all("rows => rows.map(row => row.dataset.action)")) == {"user.create"}
    page.goto(team.url + "/activity?user=bob")
    expect(rows.first).to_be_visible()
    assert all("bob" in text for text in rows.all_inner_texts())
    page.goto(team.url + "/activity?limit=2")  # newest first, two at a time, older by a link
    expect(rows).to_have_count(2)
    first_page = rows.all_inner_texts()
    page.click("[data-testid=activity-older]")
    expect(page.locator("[data-testid=activity-newest]")).to_be_visible()
    expect(rows).to_have_count(2)
    assert set(rows.all_inner_texts()).isdisjoint(first_page)
    bob.click("[data-testid=activity-link]")  # a manager sees his bucket's entries, and no others
    expect(bob.locator("[data-testid=activity-row][data-action=grant]")).to_have_count(1)
    assert all("bobs" in text for text in bob.locator("[data-testid=activity-row]").all_inner_texts())
    assert bob.console_errors == []
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_team_pages_are_accessible_in_light_and_dark(browser, team, scheme):
    context, page = browser_page(browser, scheme)
    sign_in(page, team, "ada")
    add_person(page, team, "bob")
    make_bucket(page, team, "team")
    page.goto(team.url + "/b/team/access")
    page.fill("[data-testid=grant-user]", "bob")
    with page.expect_navigation():
        page.click("[data-testid=grant-save]")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.goto(team.url + "/account")
    page.fill("[data-testid=token-name]", "laptop")
    with page.expect_navigation():
        page.click("[data-testid=token-create]")
    axe_clean(page, "token-made")
    page.screenshot(path=str(SCREENSHOTS / f"team-token-made-{scheme}.png"), full_page=True)
    for name, path in (("account", "/account"), ("people", "/people"), ("person", "/people/bob"),
                       ("tokens", "/tokens"), ("activity", "/activity"), ("access", "/b/team/access"),
                       ("bucket", "/b/team/")):
        page.goto(team.url + path)
        axe_clean(page, name)
        page.screenshot(path=str(SCREENSHOTS / f"team-{name}-{scheme}.png"), full_page=True)
    page.goto(team.url + "/account")
    page.click("[data-testid=token-row] [data-testid=token-revoke]")
    expect(page.locator("#confirm")).to_be_visible()
    axe_clean(page, "confirm-revoke")
    page.screenshot(path=str(SCREENSHOTS / f"team-confirm-revoke-{scheme}.png"))
    assert page.console_errors == []
    context.close()
    phone, small = browser_page(browser, scheme, viewport=(390, 844))  # the header wraps on a phone
    sign_in(small, team, "bob")
    for name, path in (("account", "/account"), ("activity", "/activity")):
        small.goto(team.url + path)
        axe_clean(small, f"{name}-phone")
        small.screenshot(path=str(SCREENSHOTS / f"team-{name}-phone-{scheme}.png"), full_page=True)
    assert small.console_errors == []
    phone.close()


def test_the_api_sees_what_the_pages_did(page, team):
    """The JSON twin: a token made on My account is the person's (GET /v1/files works with it)."""
    sign_in(page, team, "ada")
    page.goto(team.url + "/account")
    page.fill("[data-testid=token-name]", "script")
    page.select_option("[data-testid=token-scope]", "admin")  # an admin may give an admin's scope
    with page.expect_navigation():
        page.click("[data-testid=token-create]")
    secret = page.locator("[data-testid=token-secret]").input_value()
    request = urllib.request.Request(team.url + "/v1/files", headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request) as response:
        assert "data" in json.loads(response.read())
