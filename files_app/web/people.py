"""People and Tokens, for admins: make people (with a role), change a role, disable or enable,
set a new password, delete (their buckets go to someone else); every token, with its owner, to revoke."""

from __future__ import annotations

import time

from flask import flash, redirect, render_template, request, url_for

from .. import auth
from ..access import access
from ..errors import FilesError, InvalidInput
from ..request_io import people
from ..services.accounts import ROLES
from .account import this_session_digest, token_state
from .pages import bp


@bp.get("/people")
@access("admin")
def people_page():
    return render_template("people.html", users=people().users(), roles=ROLES)


@bp.post("/people")
@access("admin")
def create_person():
    form = request.form
    name = form.get("name", "").strip()
    try:
        first = not people().users()
        # The first person is an admin whatever the form says: a service closed by a member alone
        # would have nobody to manage it.
        info = people().create_user(name, form.get("password", ""), None if first else form.get("role", "member"))
    except FilesError as error:
        flash(f"Nobody was added: {error.message}.", "error")
        return redirect(url_for("web.people_page"))
    if first:
        flash(f"{info.name} is the first person, so an admin. The service is closed now: sign in as {info.name}.",
              "ok")
        return redirect(url_for("web.login"))
    flash(f"{info.name} can sign in now, as {'an admin' if info.role == 'admin' else 'a member'}.", "ok")
    return redirect(url_for("web.person", name=info.name))


@bp.get("/people/<name>")
@access("admin")
def person(name: str):
    info = people().user(name)
    others = [user.name for user in people().users() if user.name != name]
    tokens = [token for token in people().tokens(None, everyone=True) if token.user == name]
    return render_template("person.html", person=info, roles=ROLES, others=others, tokens=tokens, now=time.time(),
                           state=token_state, myself=name == auth.current().name)


@bp.post("/people/<name>/role")
@access("admin")
def change_role(name: str):
    try:
        info = people().update_user(name, role=request.form.get("role", ""))
    except FilesError as error:
        flash(f"The role did not change: {error.message}.", "error")
        return redirect(url_for("web.person", name=name))
    flash(f"{info.name} is {'an admin' if info.role == 'admin' else 'a member'} now.", "ok")
    return _after_change(name)


@bp.post("/people/<name>/disabled")
@access("admin")
def set_disabled(name: str):
    disabled = request.form.get("disabled") == "1"
    try:
        info = people().update_user(name, disabled=disabled)
    except FilesError as error:
        flash(error.message, "error")
        return redirect(url_for("web.person", name=name))
    flash(f"{info.name} is disabled: signed out, their tokens and links stop working."
          if disabled else f"{info.name} may sign in again.", "ok")
    return _after_change(name)


@bp.post("/people/<name>/password")
@access("admin")
def set_password(name: str):
    form = request.form
    try:
        if form.get("new_password", "") != form.get("repeat_password", ""):
            raise InvalidInput("the two passwords differ", "passwords_differ")
        mine = name == auth.current().name
        people().set_password(name, form.get("new_password", ""), keep_session=this_session_digest() if mine else None)
    except FilesError as error:
        flash(f"The password was not set: {error.message}.", "error")
        return redirect(url_for("web.person", name=name))
    flash(f"{name} has a new password; every browser signed in as them was signed out.", "ok")
    return redirect(url_for("web.person", name=name))


@bp.post("/people/<name>/delete")
@access("admin")
def delete_person(name: str):
    try:
        people().delete_user(name, transfer_to=request.form.get("transfer_to") or None)
    except FilesError as error:
        flash(f"{name} was not deleted: {error.message}.", "error")
        return redirect(url_for("web.person", name=name))
    flash(f"{name} is deleted; their tokens and links no longer work.", "ok")
    return _after_change(name, url_for("web.people_page"))


def _after_change(name: str, back: str | None = None):
    """Back to the person's page, or, when an admin changed themselves, to where they still may go."""
    if name == auth.current().name:
        return redirect(url_for("web.buckets"))
    return redirect(back or url_for("web.person", name=name))


@bp.get("/tokens")
@access("admin")
def tokens_page():
    return render_template("tokens.html", tokens=people().tokens(None, everyone=True), now=time.time(),
                           state=token_state)


@bp.post("/tokens/<int:token_id>/revoke")
@access("admin")
def revoke_any_token(token_id: int):
    try:
        token = people().revoke_token(token_id, None, everyone=True)
    except FilesError as error:
        flash(error.message, "error")
    else:
        flash(f"Token {token.name} is revoked: the next request that sends it is refused.", "ok")
    back = request.form.get("back", "")
    return redirect(url_for("web.person", name=back) if back else url_for("web.tokens_page"))
