"""Work queues and four eyes: the operators' queues of applications and withdrawals are
read by status, oldest first (an index each), and a withdrawal row names who approved it
(a payout above FENXIAO_FOUR_EYES_MIN waits for a second person), and a withdrawal's or
case's status may be "awaiting_second_approval", longer than the 20 characters they had;
a case waiting so shows the first approval (amount, reference, who).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("rm_withdrawals", "rm_aftersales_cases"):  # "awaiting_second_approval"
        with op.batch_alter_table(table) as batch:
            batch.alter_column("status", type_=sa.String(40), existing_type=sa.String(20),
                               existing_nullable=False)
    op.add_column("rm_withdrawals", sa.Column("approvals", sa.JSON(), nullable=True))
    op.add_column("rm_aftersales_cases",
                  sa.Column("refund_approval", sa.JSON(), nullable=True))
    op.create_index("rm_withdrawals_queue_idx", "rm_withdrawals",
                    ["status", "requested_at", "withdrawal_id"])
    op.create_index("rm_distributors_queue_idx", "rm_distributors",
                    ["status", "applied_at", "distributor_id"])


def downgrade() -> None:
    op.drop_index("rm_distributors_queue_idx", "rm_distributors")
    op.drop_index("rm_withdrawals_queue_idx", "rm_withdrawals")
    with op.batch_alter_table("rm_withdrawals") as batch:
        batch.drop_column("approvals")
    with op.batch_alter_table("rm_aftersales_cases") as batch:
        batch.drop_column("refund_approval")
    for table in ("rm_withdrawals", "rm_aftersales_cases"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("status", type_=sa.String(20), existing_type=sa.String(40),
                               existing_nullable=False)
