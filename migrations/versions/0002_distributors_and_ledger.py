"""Distributors, commission rules, commissions, journal, balances, earnings, withdrawals.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rm_account_balances',
    sa.Column('account', sa.String(length=120), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('debit_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('credit_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.PrimaryKeyConstraint('account', 'currency')
    )
    op.create_table('rm_commission_rules',
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('level1', sa.Integer(), nullable=False),
    sa.Column('level2', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('scope')
    )
    op.create_table('rm_commissions',
    sa.Column('line_uuid', sa.String(length=36), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('distributor_id', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.String(length=64), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('base_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rate_bp', sa.Integer(), nullable=True),
    sa.Column('fixed_per_unit', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('amount_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reversed_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('forfeit_reason', sa.String(length=40), nullable=True),
    sa.Column('rule_kind', sa.String(length=10), nullable=True),
    sa.Column('rule_version', sa.Integer(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('accrued_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('line_uuid', 'level')
    )
    op.create_index('ix_rm_commissions_distributor_id', 'rm_commissions', ['distributor_id'])

    op.create_table('rm_customer_bindings',
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('binding_uuid', sa.String(length=36), nullable=False),
    sa.Column('distributor_id', sa.String(length=64), nullable=False),
    sa.Column('bound_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('customer_id'),
    sa.UniqueConstraint('binding_uuid')
    )
    op.create_index('ix_rm_customer_bindings_distributor_id', 'rm_customer_bindings', ['distributor_id'])

    op.create_table('rm_distributors',
    sa.Column('distributor_id', sa.String(length=64), nullable=False),
    sa.Column('distributor_uuid', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('referral_code', sa.String(length=20), nullable=True),
    sa.Column('referrer_id', sa.String(length=64), nullable=True),
    sa.Column('upline_id', sa.String(length=64), nullable=True),
    sa.Column('downline_count', sa.Integer(), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('distributor_id'),
    sa.UniqueConstraint('distributor_uuid'),
    sa.UniqueConstraint('referral_code')
    )
    op.create_index('ix_rm_distributors_upline_id', 'rm_distributors', ['upline_id'])

    op.create_table('rm_earnings',
    sa.Column('distributor_id', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('pending', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('available', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('withdrawing', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('paid_out', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reversed', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lifetime_earned', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.PrimaryKeyConstraint('distributor_id', 'currency')
    )
    op.create_table('rm_journal',
    sa.Column('entry_uuid', sa.String(length=36), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('cause', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('account', sa.String(length=120), nullable=False),
    sa.Column('amount_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('memo', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('entry_uuid', 'line_no')
    )
    op.create_index('ix_rm_journal_account', 'rm_journal', ['account'])
    op.create_index('ix_rm_journal_cause', 'rm_journal', ['cause'])

    op.create_table('rm_withdrawals',
    sa.Column('withdrawal_id', sa.String(length=64), nullable=False),
    sa.Column('withdrawal_uuid', sa.String(length=36), nullable=False),
    sa.Column('distributor_id', sa.String(length=64), nullable=False),
    sa.Column('amount_minor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('payment_reference', sa.String(length=200), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('withdrawal_id'),
    sa.UniqueConstraint('withdrawal_uuid')
    )
    op.create_index('ix_rm_withdrawals_distributor_id', 'rm_withdrawals', ['distributor_id'])



def downgrade() -> None:
    for table in ("rm_withdrawals", "rm_journal", "rm_earnings", "rm_distributors",
                  "rm_customer_bindings", "rm_commissions", "rm_commission_rules",
                  "rm_account_balances"):
        op.drop_table(table)
