"""Who is acting, for the services that need to know beyond their arguments: the audit log (who,
from where) and a bucket made on first use (whose it is). The HTTP layer sets it once per request,
the operator's commands once per command; anything else (gc) acts as nobody in particular.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    owner: str | None  # "user:<id>", "token:<id>", "share:<id>"; None on an open service
    name: str | None  # as it reads at the time: "ada", "ada (token laptop)", "token ci"
    address: str | None = None
    user_agent: str | None = None
    user_id: int | None = None  # the person, who owns the buckets they make
    every_bucket: bool = True  # an admin (or an operator, or the open service): not limited to their buckets


NOBODY = Actor(None, None)
OPERATOR = Actor("operator", "operator (flask files)")
_actor: contextvars.ContextVar[Actor] = contextvars.ContextVar("files_actor", default=NOBODY)


def set_actor(actor: Actor) -> None:
    _actor.set(actor)


def current_actor() -> Actor:
    return _actor.get()


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    reset = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(reset)
