from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from commands.settings import database_url
from migrations import compare_type, target_metadata

config = context.config
url = config.attributes.get("database_url") or database_url()

engine = create_engine(url)
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=target_metadata(),
                      compare_type=compare_type,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
