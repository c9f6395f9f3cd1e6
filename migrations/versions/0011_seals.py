"""Tamper evidence: the HMAC chain over the event log, sealed in blocks.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # One link per sealed event: the HMAC chain (projections/seal.py).
    op.create_table(
        "fenxiao_seal_links",
        sa.Column("position", BIGINT, autoincrement=False, nullable=False),
        sa.Column("prev_position", BIGINT, nullable=False),
        sa.Column("mac", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("position"),
    )
    # One seal per block of links, each chained to the one before and MAC'd with the key.
    op.create_table(
        "fenxiao_seals",
        sa.Column("block", BIGINT, autoincrement=False, nullable=False),
        sa.Column("after_position", BIGINT, nullable=False),
        sa.Column("last_position", BIGINT, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("block_hash", sa.LargeBinary(), nullable=False),
        sa.Column("prev_seal", sa.LargeBinary(), nullable=False),
        sa.Column("mac", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("block"),
        sa.UniqueConstraint("after_position", name="uq_fenxiao_seals_after_position"),
    )


def downgrade() -> None:
    op.drop_table("fenxiao_seals")
    op.drop_table("fenxiao_seal_links")
