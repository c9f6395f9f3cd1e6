"""Reports: sales facts and replenishment settings (read models).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rm_report_orders",
        sa.Column("order_uuid", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("distributor_id", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("order_uuid"),
        sa.UniqueConstraint("order_id"),
    )
    op.create_table(
        "rm_sales_facts",
        sa.Column("source_uuid", sa.String(length=36), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("distributor_id", sa.String(length=64), nullable=True),
        sa.Column("sku", sa.String(length=64), nullable=True),
        sa.Column("units", BIGINT, nullable=False),
        sa.Column("gross_minor", BIGINT, nullable=False),
        sa.Column("discount_minor", BIGINT, nullable=False),
        sa.Column("amount_minor", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("source_uuid", "source_version", "line_no"),
    )
    op.create_index("ix_rm_sales_facts_at", "rm_sales_facts", ["at"])
    op.create_table(
        "rm_report_open_shipments",
        sa.Column("shipment_uuid", sa.String(length=36), nullable=False),
        sa.Column("warehouse_id", sa.String(length=64), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("shipment_uuid"),
    )
    op.create_table(
        "rm_demand_daily",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("warehouse_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("units", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("sku", "warehouse_id", "day"),
    )
    op.create_table(
        "rm_replenishment_policies",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        sa.Column("safety_stock", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("sku"),
    )


def downgrade() -> None:
    for table in ("rm_replenishment_policies", "rm_demand_daily", "rm_report_open_shipments",
                  "rm_sales_facts", "rm_report_orders"):
        op.drop_table(table)
