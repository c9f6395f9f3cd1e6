"""The event log by topic: an index on (topic, id), so reading a projection's next events
(the runner asks for the events of its topics in a range of positions) costs the events
it gets, not the positions it passes. A projection whose events are few in the log (the
catalog: a few hundred in a million) otherwise scans the whole log to rebuild; the audit
history filtered by type and the as-of balances' journal reads seek the same way.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-26
"""
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("fenxiao_events_topic_idx", "fenxiao_events", ["topic", "id"])


def downgrade() -> None:
    op.drop_index("fenxiao_events_topic_idx", "fenxiao_events")
