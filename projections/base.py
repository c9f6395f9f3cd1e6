"""What a projection is: a stable name, its tables, and a handler per event type.

The runner (projections/runner.py) feeds a projection batches of decoded events and commits
the writes of a batch together with the projection's tracking position.

A projection's handlers read and write its own `tables` only (reading the event log is
fine), through the module-level Table objects: a rebuild, `audit check` and `audit as-of`
build a projection aside by shadowing exactly those tables with temporary ones on the
build's connection (projections/scratch.py), so the handlers need no change to write there.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

from eventsourcing.utils import get_topic
from sqlalchemy import Table
from sqlalchemy.engine import Connection

Handler = Callable[[Connection, Any], None]


class Projection:
    name: ClassVar[str]
    tables: ClassVar[Sequence[Table]]
    # event class -> handler(conn, event); subclasses fill it with `handles`.
    handlers: ClassVar[dict[type, Handler]]

    @classmethod
    def event_types(cls) -> tuple[type, ...]:
        return tuple(cls.handlers)

    @classmethod
    def topics(cls) -> list[str]:
        return sorted(get_topic(event_cls) for event_cls in cls.event_types())

    def apply_batch(self, conn: Connection, events: Sequence[Any]) -> None:
        """Apply decoded events in log order. Projections with heavy traffic override
        this to fold a batch into a few set-based statements."""
        for event in events:
            self.handlers[type(event)](conn, event)

    def clear(self, conn: Connection) -> None:
        for table in reversed(self.tables):
            conn.execute(table.delete())
