"""Commission entries name the refunds that reversed them; shipments of after-sales cases.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rm_commission_reversals",
        sa.Column("line_uuid", sa.String(length=36), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("amount_minor", BIGINT, nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("refunded_total_minor", BIGINT, nullable=False),
        sa.Column("refund_reference", sa.String(length=200), nullable=True),
        sa.Column("cause", sa.String(length=200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("line_uuid", "level", "version"),
    )
    # Earlier reversals are in the log, not in the new table: the commissions projection
    # starts again from the beginning (the worker replays it), so every entry gets them.
    op.execute("DELETE FROM rm_commissions")
    op.execute("DELETE FROM fenxiao_parked WHERE projection = 'commissions'")
    op.execute("UPDATE fenxiao_tracking SET position = 0 WHERE name = 'commissions'")


    # Exchanges and repairs ship too: their shipments name the case.
    with op.batch_alter_table("rm_shipments") as batch:
        batch.add_column(sa.Column("case_id", sa.String(length=64), nullable=True))
        batch.create_index("ix_rm_shipments_case_id", ["case_id"])


def downgrade() -> None:
    with op.batch_alter_table("rm_shipments") as batch:
        batch.drop_index("ix_rm_shipments_case_id")
        batch.drop_column("case_id")
    op.drop_table("rm_commission_reversals")
