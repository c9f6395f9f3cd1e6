"""Shipments, carriers and tracking.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rm_shipments",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("shipment_uuid", sa.String(36), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("purchase_order_id", sa.String(64), nullable=True),
        sa.Column("warehouse_id", sa.String(64), nullable=False),
        sa.Column("region", sa.Text(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("carrier", sa.String(64), nullable=True),
        sa.Column("tracking_number", sa.String(64), nullable=True),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("fee_minor", BIGINT, nullable=True),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column("meets_promise", sa.Boolean(), nullable=True),
        sa.Column("chosen_by", sa.String(20), nullable=True),
        sa.Column("alternatives", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("shipment_id"),
        sa.UniqueConstraint("shipment_uuid"),
    )
    op.create_index("ix_rm_shipments_order_id", "rm_shipments", ["order_id"])
    op.create_index("ix_rm_shipments_purchase_order_id", "rm_shipments",
                    ["purchase_order_id"])
    op.create_table(
        "rm_shipment_events",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shipment_id", "version"),
    )
    op.create_table(
        "rm_carriers",
        sa.Column("carrier", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("base_fee_minor", BIGINT, nullable=False),
        sa.Column("per_item_fee_minor", BIGINT, nullable=False),
        sa.Column("default_days", sa.Integer(), nullable=False),
        sa.Column("promised_days", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("carrier"),
    )


def downgrade() -> None:
    op.drop_table("rm_carriers")
    op.drop_table("rm_shipment_events")
    op.drop_index("ix_rm_shipments_purchase_order_id", table_name="rm_shipments")
    op.drop_index("ix_rm_shipments_order_id", table_name="rm_shipments")
    op.drop_table("rm_shipments")
