"""Alembic owns every table: the event store, tracking, idempotency, tokens, read models."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    config = Config(str(HERE / "alembic.ini"))
    config.set_main_option("script_location", str(HERE))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def target_metadata() -> list:
    """Every table the migrations must create, as the code defines them."""
    import projections  # noqa: F401  (registers the read-model tables)
    from sqlalchemy import Index

    from commands.storage import EVENTS_TABLE, EVENTS_TOPIC_INDEX, SNAPSHOTS_TABLE, metadata
    from eventsourcing_sqlalchemy.datastore import SQLAlchemyDatastore
    from eventsourcing_sqlalchemy.models import SnapshotRecord, StoredEventRecord

    events = SQLAlchemyDatastore.define_record_class(
        cls_name="FenxiaoEvent", table_name=EVENTS_TABLE, schema_name=None,
        base_cls=StoredEventRecord)
    SQLAlchemyDatastore.define_record_class(
        cls_name="FenxiaoSnapshot", table_name=SNAPSHOTS_TABLE, schema_name=None,
        base_cls=SnapshotRecord)
    table = events.__table__
    if not any(index.name == EVENTS_TOPIC_INDEX for index in table.indexes):
        Index(EVENTS_TOPIC_INDEX, table.c.topic, table.c.id)  # ours (0015), not the library's
    return [metadata, table.metadata]


def compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type):
    """SQLite reflects the event store's BINARY(16) UUID column with NUMERIC affinity; that
    is the same column, not a difference. Everything else: Alembic's default comparison."""
    from sqlalchemy_utils.types.uuid import UUIDType

    if isinstance(metadata_type, UUIDType) and context.dialect.name == "sqlite":
        return False
    return None
