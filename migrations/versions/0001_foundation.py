"""Foundation: event store, tracking, idempotency, API tokens, catalog and inventory.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy_utils.types.uuid import UUIDType

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 64-bit integers (positions, money, quantities); SQLite's INTEGER already is.
POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # The event store, in the exact shape eventsourcing-sqlalchemy reads and writes.
    op.create_table(
        "fenxiao_events",
        sa.Column("id", POSITION, autoincrement=True, nullable=False),
        sa.Column("originator_id", UUIDType(), nullable=False),
        sa.Column("originator_version", POSITION, nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("fenxiao_events_aggregate_idx", "fenxiao_events",
                    ["originator_id", "originator_version"], unique=True)
    op.create_table(
        "fenxiao_tracking",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("position", POSITION, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "fenxiao_idempotency",
        sa.Column("principal", sa.String(100), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key"),
    )
    op.create_table(
        "fenxiao_api_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("distributor_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
        sa.UniqueConstraint("name", name="uq_fenxiao_api_tokens_name"),
    )
    op.create_table(
        "rm_products",
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", sa.String(500), nullable=False),
        sa.Column("price_minor", POSITION, nullable=False),
        sa.Column("wholesale_price_minor", POSITION, nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("product_uuid", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("sku"),
        sa.UniqueConstraint("product_uuid"),
    )
    op.create_table(
        "rm_warehouses",
        sa.Column("warehouse_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("warehouse_id"),
    )
    op.create_table(
        "rm_inventory",
        sa.Column("stock_item_id", sa.String(36), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("warehouse_id", sa.String(64), nullable=False),
        sa.Column("on_hand", POSITION, nullable=False),
        sa.Column("reserved", POSITION, nullable=False),
        sa.PrimaryKeyConstraint("stock_item_id"),
    )
    op.create_index("ix_rm_inventory_sku", "rm_inventory", ["sku"])


def downgrade() -> None:
    for table in ("rm_inventory", "rm_warehouses", "rm_products", "fenxiao_api_tokens",
                  "fenxiao_idempotency", "fenxiao_tracking", "fenxiao_events"):
        op.drop_table(table)
