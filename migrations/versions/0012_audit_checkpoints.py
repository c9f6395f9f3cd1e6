"""Point-in-time audit: balance checkpoints over the log.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _totals() -> list[sa.Column]:
    return [sa.Column("debit_minor", BIGINT, nullable=False),
            sa.Column("credit_minor", BIGINT, nullable=False)]


def _key() -> list[sa.Column]:
    return [sa.Column("account", sa.String(length=120), nullable=False),
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("kind", sa.String(length=40), nullable=False)]


def upgrade() -> None:
    # A new projection: the worker builds it from the start of the log.
    op.create_table(
        "audit_checkpoints",
        sa.Column("position", BIGINT, nullable=False),
        sa.Column("latest_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("position"),
    )
    op.create_index("ix_audit_checkpoints_latest_at", "audit_checkpoints", ["latest_at"])
    op.create_table(
        "audit_checkpoint_balances",
        *_key(),
        sa.Column("position", BIGINT, nullable=False),
        *_totals(),
        sa.PrimaryKeyConstraint("account", "currency", "kind", "position"),
    )
    op.create_table(
        "audit_running_balances",
        *_key(),
        *_totals(),
        sa.Column("changed_at", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("account", "currency", "kind"),
    )
    op.create_index("ix_audit_running_balances_changed_at", "audit_running_balances",
                    ["changed_at"])
    op.create_table(
        "audit_clock",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("latest_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    for table in ("audit_clock", "audit_running_balances", "audit_checkpoint_balances",
                  "audit_checkpoints"):
        op.drop_table(table)
