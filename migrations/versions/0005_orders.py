"""Orders: the order read model (rm_orders, rm_order_lines, rm_order_shipments).

The write-side indexes orders need (where a SKU is stocked, payment references, the
backorder queues) are aggregates in the event store: no tables of their own.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rm_orders",
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("order_uuid", sa.String(36), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("distributor_id", sa.String(64), nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("subtotal_minor", BIGINT, nullable=False),
        sa.Column("discount_minor", BIGINT, nullable=False),
        sa.Column("shipping_fee_minor", BIGINT, nullable=False),
        sa.Column("total_minor", BIGINT, nullable=False),
        sa.Column("paid_minor", BIGINT, nullable=False),
        sa.Column("refunded_minor", BIGINT, nullable=False),
        sa.Column("coupon_code", sa.String(64), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("order_id"),
        sa.UniqueConstraint("order_uuid"),
    )
    op.create_index("ix_rm_orders_distributor_id", "rm_orders", ["distributor_id"])
    op.create_index("ix_rm_orders_customer_id", "rm_orders", ["customer_id"])
    op.create_index("ix_rm_orders_status_placed_at", "rm_orders", ["status", "placed_at"])
    op.create_index("ix_rm_orders_status_delivered_at", "rm_orders",
                    ["status", "delivered_at"])
    op.create_index("ix_rm_orders_placed_at_order_id", "rm_orders", ["placed_at", "order_id"])
    op.create_table(
        "rm_order_lines",
        sa.Column("order_uuid", sa.String(36), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", BIGINT, nullable=False),
        sa.Column("gross_minor", BIGINT, nullable=False),
        sa.Column("discount_minor", BIGINT, nullable=False),
        sa.Column("net_minor", BIGINT, nullable=False),
        sa.Column("backordered", sa.Integer(), nullable=False),
        sa.Column("paid_minor", BIGINT, nullable=False),
        sa.Column("refunded_minor", BIGINT, nullable=False),
        sa.Column("allocations", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("order_uuid", "line_no"),
    )
    op.create_index("ix_rm_order_lines_sku", "rm_order_lines", ["sku"])
    op.create_table(
        "rm_order_shipments",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("order_uuid", sa.String(36), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("warehouse_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("shipment_id"),
    )
    op.create_index("ix_rm_order_shipments_order_uuid", "rm_order_shipments",
                    ["order_uuid"])


def downgrade() -> None:
    op.drop_index("ix_rm_order_shipments_order_uuid", table_name="rm_order_shipments")
    op.drop_table("rm_order_shipments")
    op.drop_index("ix_rm_order_lines_sku", table_name="rm_order_lines")
    op.drop_table("rm_order_lines")
    for index in ("ix_rm_orders_placed_at_order_id", "ix_rm_orders_status_delivered_at",
                  "ix_rm_orders_status_placed_at", "ix_rm_orders_customer_id",
                  "ix_rm_orders_distributor_id"):
        op.drop_index(index, table_name="rm_orders")
    op.drop_table("rm_orders")
