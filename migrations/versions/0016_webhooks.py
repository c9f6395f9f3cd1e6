"""Webhooks: each endpoint's delivery cursor and every delivery attempt; notifications
that concern no order (an endpoint disabled after failing for too long is told to the
operators) may leave the order and customer empty.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fenxiao_webhook_cursors",
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("position", BIGINT, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replays_applied", sa.Integer(), nullable=False),
        sa.Column("enables_applied", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("webhook_id"),
    )
    op.create_table(
        "fenxiao_webhook_deliveries",
        sa.Column("delivery_id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("position", BIGINT, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id"),
    )
    op.create_index("ix_fenxiao_webhook_deliveries_webhook", "fenxiao_webhook_deliveries",
                    ["webhook_id", "delivery_id"])
    with op.batch_alter_table("rm_notifications") as batch:
        batch.alter_column("order_id", existing_type=sa.String(length=64), nullable=True)
        batch.alter_column("customer_id", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("rm_notifications") as batch:
        batch.alter_column("customer_id", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("order_id", existing_type=sa.String(length=64), nullable=False)
    op.drop_index("ix_fenxiao_webhook_deliveries_webhook", "fenxiao_webhook_deliveries")
    op.drop_table("fenxiao_webhook_deliveries")
    op.drop_table("fenxiao_webhook_cursors")
