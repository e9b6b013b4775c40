"""Who may call a route, declared where the route is:

    @files_bp.delete("/<bucket>/<path:key>")
    @access("write", bucket="bucket")
    def delete_file(bucket, key): ...

The one authentication hook (auth.py) reads the declaration of the view a request reached; no list
of endpoint names and no path prefix decides access. A route that declares nothing is refused (and
a test walks the url_map for it).

Levels, each allowing less than the next:
- "public": anyone, signed in or not (the view checks what it must: a share link's secret).
- "authenticated": anyone who proved who they are; what they see is theirs (the view filters).
- "read" / "write" / "manage": that much in the bucket named by the view argument `bucket`, or,
  without one, a scope that allows it (the view then checks the bucket it reads from the body).
- "admin": an admin person with an admin-scoped credential, or an operator's admin token (and, with
  `bucket`, a token confined to a bucket only there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

LEVELS = ("public", "authenticated", "read", "write", "manage", "admin")
View = TypeVar("View", bound=Callable)


@dataclass(frozen=True)
class Rule:
    level: str
    bucket: str | None = None  # the view argument that names the bucket, if any


def access(level: str, bucket: str | None = None) -> Callable[[View], View]:
    if level not in LEVELS:
        raise ValueError(f"access level {level!r} is not one of {LEVELS}")
    if bucket is not None and level not in ("read", "write", "manage", "admin"):
        raise ValueError("only read, write, manage and admin apply to a bucket")

    def declare(view: View) -> View:
        view.access_rule = Rule(level, bucket)
        return view

    return declare


def rule_of(view: Callable | None) -> Rule | None:
    return getattr(view, "access_rule", None)
