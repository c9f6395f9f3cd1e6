"""Coupons, threshold promotions and B2B purchase orders.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rm_coupons",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("coupon_uuid", sa.String(length=36), nullable=False),
        sa.Column("amount_off_minor", BIGINT, nullable=True),
        sa.Column("percent_off_bp", sa.Integer(), nullable=True),
        sa.Column("min_spend_minor", BIGINT, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("valid_from", sa.String(length=40), nullable=True),
        sa.Column("valid_to", sa.String(length=40), nullable=True),
        sa.Column("total_limit", BIGINT, nullable=True),
        sa.Column("per_customer_limit", BIGINT, nullable=True),
        sa.Column("skus", sa.Text(), nullable=True),
        sa.Column("issued_at", sa.String(length=40), nullable=False),
        sa.Column("redeemed", sa.Integer(), nullable=False),
        sa.Column("released", sa.Integer(), nullable=False),
        sa.Column("discount_minor", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("code"),
        sa.UniqueConstraint("coupon_uuid"),
    )
    op.create_table(
        "rm_coupon_redemptions",
        sa.Column("coupon_uuid", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("discount_minor", BIGINT, nullable=False),
        sa.Column("redeemed_at", sa.String(length=40), nullable=False),
        sa.Column("released_at", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("coupon_uuid", "order_id"),
    )
    op.create_table(
        "rm_threshold_promotions",
        sa.Column("promotion_id", sa.String(length=64), nullable=False),
        sa.Column("tiers", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("valid_from", sa.String(length=40), nullable=True),
        sa.Column("valid_to", sa.String(length=40), nullable=True),
        sa.Column("added_at", sa.String(length=40), nullable=False),
        sa.Column("ended_at", sa.String(length=40), nullable=True),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("released", sa.Integer(), nullable=False),
        sa.Column("discount_minor", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("promotion_id"),
    )
    op.create_table(
        "rm_threshold_uses",
        sa.Column("order_uuid", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("promotion_id", sa.String(length=64), nullable=False),
        sa.Column("discount_minor", BIGINT, nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("order_uuid"),
    )
    op.create_index("ix_rm_threshold_uses_promotion_id", "rm_threshold_uses",
                    ["promotion_id"])
    op.create_table(
        "rm_purchase_orders",
        sa.Column("purchase_order_id", sa.String(length=64), nullable=False),
        sa.Column("po_uuid", sa.String(length=36), nullable=False),
        sa.Column("distributor_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_minor", BIGINT, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("purchase_order_id"),
        sa.UniqueConstraint("po_uuid"),
    )
    op.create_index("ix_rm_purchase_orders_distributor_id", "rm_purchase_orders",
                    ["distributor_id"])
    op.create_index("ix_rm_purchase_orders_status", "rm_purchase_orders", ["status"])
    op.create_table(
        "rm_purchase_order_lines",
        sa.Column("po_uuid", sa.String(length=36), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", BIGINT, nullable=False),
        sa.Column("unit_price_minor", BIGINT, nullable=False),
        sa.Column("amount_minor", BIGINT, nullable=False),
        sa.Column("allocations", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("po_uuid", "line_no"),
    )
    op.create_table(
        "rm_purchase_order_shipments",
        sa.Column("po_uuid", sa.String(length=36), nullable=False),
        sa.Column("shipment_id", sa.String(length=64), nullable=False),
        sa.Column("warehouse_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("po_uuid", "shipment_id"),
    )


def downgrade() -> None:
    for table in ("rm_purchase_order_shipments", "rm_purchase_order_lines",
                  "rm_purchase_orders", "rm_threshold_uses", "rm_threshold_promotions",
                  "rm_coupon_redemptions", "rm_coupons"):
        op.drop_table(table)
