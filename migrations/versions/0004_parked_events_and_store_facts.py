"""Parked events (a projection never stalls on one event) and facts about the store (the
cipher canary).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fenxiao_parked",
        sa.Column("projection", sa.String(100), nullable=False),
        sa.Column("position", BIGINT, nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("projection", "position"),
    )
    op.create_table(
        "fenxiao_store_facts",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("fenxiao_store_facts")
    op.drop_table("fenxiao_parked")
