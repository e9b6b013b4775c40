"""Every route says who may call it, where the route is: a route that declares nothing fails here
(and is refused at run time)."""

from __future__ import annotations

from files_app import create_app
from files_app.access import LEVELS, rule_of


def test_every_route_declares_its_access(tmp_path):
    app = create_app({"TESTING": True, "FILES_DATA_DIR": str(tmp_path), "FILES_DATABASE_URL": ""})
    undeclared = []
    for rule in app.url_map.iter_rules():
        declared = rule_of(app.view_functions[rule.endpoint])
        if declared is None:
            undeclared.append(f"{rule.endpoint} {sorted(rule.methods)} {rule.rule}")
            continue
        assert declared.level in LEVELS
        if declared.bucket is not None:  # the argument it names is one the route has
            assert declared.bucket in rule.arguments, (rule.rule, declared)
    assert undeclared == []


def test_a_route_without_a_declaration_is_refused(app):
    app.add_url_rule("/forgotten", "forgotten", lambda: "served")
    response = app.test_client().get("/forgotten")
    assert response.status_code == 403 and b"declares no access rule" in response.data
