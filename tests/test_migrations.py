"""Alembic owns the schema: head matches the code's tables, and upgrading twice is a no-op."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from migrations import compare_type, target_metadata, upgrade


def test_head_matches_the_models_and_upgrade_is_idempotent(database_url: str) -> None:
    upgrade(database_url)  # the fixture already migrated: this run must change nothing
    engine = create_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": compare_type})
        assert context.get_current_revision() == "0018"
        assert compare_metadata(context, target_metadata()) == []
    engine.dispose()
