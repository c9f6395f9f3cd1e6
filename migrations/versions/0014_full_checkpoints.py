"""Point-in-time audit: full checkpoints (every account's totals now and then), so an
as-of trial balance reads a range of rows rather than one index seek per account.

Checkpoints built before this have no full ones: as-of queries before the first full
checkpoint take the per-account way, as they did.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_full_checkpoints",
        sa.Column("position", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("position"),
    )
    op.create_index("ix_audit_checkpoint_balances_position", "audit_checkpoint_balances",
                    ["position"])


def downgrade() -> None:
    op.drop_index("ix_audit_checkpoint_balances_position", "audit_checkpoint_balances")
    op.drop_table("audit_full_checkpoints")
