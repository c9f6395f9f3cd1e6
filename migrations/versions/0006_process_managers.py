"""Process managers' state and notifications.

The process managers (projections/policies.py) keep no tables of their own: their
positions are rows of fenxiao_tracking and their refused events rows of fenxiao_parked.
The notifications read model (projections/notifications.py) has two tables.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rm_notifications",
        sa.Column("notification_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("distributor_id", sa.String(64), nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("notification_id"),
    )
    op.create_index("ix_rm_notifications_distributor_id", "rm_notifications",
                    ["distributor_id"])
    op.create_index("ix_rm_notifications_customer_id", "rm_notifications", ["customer_id"])
    op.create_index("ix_rm_notifications_at", "rm_notifications", ["at", "notification_id"])
    op.create_table(
        "rm_notification_orders",
        sa.Column("order_uuid", sa.String(36), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("distributor_id", sa.String(64), nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.PrimaryKeyConstraint("order_uuid"),
    )


def downgrade() -> None:
    op.drop_table("rm_notification_orders")
    op.drop_index("ix_rm_notifications_at", table_name="rm_notifications")
    op.drop_index("ix_rm_notifications_customer_id", table_name="rm_notifications")
    op.drop_index("ix_rm_notifications_distributor_id", table_name="rm_notifications")
    op.drop_table("rm_notifications")
