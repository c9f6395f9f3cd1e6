"""After-sales cases (read model).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rm_aftersales_cases",
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("case_uuid", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("distributor_id", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("amount_minor", BIGINT, nullable=True),
        sa.Column("refunded_minor", BIGINT, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
        sa.UniqueConstraint("case_uuid"),
    )
    op.create_index("ix_rm_aftersales_cases_order_id", "rm_aftersales_cases", ["order_id"])
    op.create_index("ix_rm_aftersales_cases_status_requested_at", "rm_aftersales_cases",
                    ["status", "requested_at"])
    op.create_index("ix_rm_aftersales_cases_requested_at_case_id", "rm_aftersales_cases",
                    ["requested_at", "case_id"])


def downgrade() -> None:
    op.drop_table("rm_aftersales_cases")
