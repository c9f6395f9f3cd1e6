"""Snapshots of long-lived aggregates (stock items, wallets), in the library's shape.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy_utils.types.uuid import UUIDType

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fenxiao_snapshots",
        sa.Column("originator_id", UUIDType(), nullable=False),
        sa.Column("originator_version", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("originator_id", "originator_version"),
    )


def downgrade() -> None:
    op.drop_table("fenxiao_snapshots")
