"""Token lifetimes: an API token may expire (`fenxiao token create --expires-in DAYS`), is
revoked by marking it (`fenxiao token revoke NAME`: the row stays, so `fenxiao token list
--all` still shows it), and records when it was last used, at most a minute behind.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-15
"""
import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

COLUMNS = ("expires_at", "revoked_at", "last_used_at")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("fenxiao_api_tokens",
                      sa.Column(name, sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Without the marks a revoked token would work again and an expiring one forever:
    # the old schema cannot hold them back, so their rows go.
    op.execute(sa.text("DELETE FROM fenxiao_api_tokens "
                       "WHERE revoked_at IS NOT NULL OR expires_at IS NOT NULL"))
    with op.batch_alter_table("fenxiao_api_tokens") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
