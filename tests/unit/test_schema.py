"""The Alembic migrations create exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from files_app.models import Base, db

# The key search index lives outside the models (an FTS5 table and its triggers, or a GIN index).
SEARCH_INDEX = ("objects_fts", "ix_objects_key_trgm")


def test_migrations_match_models(services):
    def modelled(_object, name, _kind, _reflected, _compare_to) -> bool:
        return not (name or "").startswith(SEARCH_INDEX)

    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": modelled})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
