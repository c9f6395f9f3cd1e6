"""The Fenxiao application: the event store plus the command runner every command goes
through (metadata, one transaction, idempotency, bounded retries on version conflicts)."""
from __future__ import annotations

import contextvars
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from uuid import UUID, uuid4

import sqlalchemy.exc
from eventsourcing.application import AggregateNotFoundError, Application, LRUCache
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError as StoreIntegrityError
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import select
from sqlalchemy.engine import Connection

from commands.settings import Settings
from commands.storage import idempotency
from domain.errors import DomainError, NotFound


@dataclass(frozen=True)
class CommandContext:
    """Who asked for the command and why; recorded as metadata on every event it causes."""

    actor: str
    idempotency_key: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    command_id: str = field(default_factory=lambda: uuid4().hex)

    def as_meta(self) -> dict[str, str | None]:
        return {
            "actor": self.actor,
            "command_id": self.command_id,
            "idempotency_key": self.idempotency_key,
            "correlation_id": self.correlation_id or self.command_id,
            "causation_id": self.causation_id,
        }


SYSTEM = CommandContext(actor="system")
_current_context: contextvars.ContextVar[CommandContext] = contextvars.ContextVar(
    "fenxiao_command_context", default=SYSTEM)
# Ids of the aggregates the running command has saved (None outside a command).
_saved_ids: contextvars.ContextVar[set[UUID] | None] = contextvars.ContextVar(
    "fenxiao_saved_ids", default=None)


class MetadataMapper(Mapper):
    """Stamps each new event with the metadata of the command that caused it."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        state = domain_event.__dict__
        if "meta" not in state:
            state["meta"] = _current_context.get().as_meta()
        return super().to_stored_event(domain_event)


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"


class ConcurrencyConflict(DomainError):
    code = "concurrency_conflict"


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


def request_fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class CoreApp(Application):
    """Infrastructure shared by all services; the services are mixed in by `Fenxiao`."""

    name = "fenxiao"  # the event table is "fenxiao_events"

    def __init__(self, settings: Settings) -> None:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing_sqlalchemy",
            "SQLALCHEMY_URL": settings.database_url,
            "CREATE_TABLE": "n",  # Alembic owns every table
            "MAPPER_TOPIC": get_topic(MetadataMapper),
            # Hot aggregates stay in memory and are fast-forwarded from the store on each
            # load (+30 % commands/s measured); see `_forget_uncommitted` for its one risk.
            "AGGREGATE_CACHE_MAXSIZE": "10000",
        }
        if settings.cipher_key:
            env["CIPHER_TOPIC"] = "eventsourcing.cryptography:AESCipher"
            env["CIPHER_KEY"] = settings.cipher_key
        super().__init__(env)
        self.settings = settings
        self.datastore = self.recorder.datastore  # type: ignore[attr-defined]
        self.engine = self.datastore.engine
        self.commit_listeners: list[Callable[[int], None]] = []
        # The one clock of the application; tests and replays set their own.
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def close(self) -> None:
        super().close()
        self.engine.dispose()

    # -- the command runner ------------------------------------------------------

    def execute(self, command: Callable[[], dict[str, Any]], *, status: int = 200,
                context: CommandContext = SYSTEM, request_hash: str | None = None) -> Reply:
        """Run `command` (load, decide, save) in one transaction, with its idempotency
        record if a key was given, retrying on optimistic-concurrency conflicts."""
        key = context.idempotency_key
        ctx_token = _current_context.set(context)
        try:
            for attempt in range(self.settings.command_attempts):
                saved_token = _saved_ids.set(set())
                try:
                    with self.datastore.transaction(commit=True) as session:
                        conn = session.connection()
                        if key and (stored := self._stored_reply(conn, context, request_hash)):
                            return stored
                        reply = Reply(status, command())
                        if key:
                            self._store_reply(conn, context, request_hash, reply)
                except (sqlalchemy.exc.IntegrityError, StoreIntegrityError):
                    # A concurrent writer won: either the same idempotency key (answer with
                    # its reply) or a newer version of an aggregate we loaded (try again).
                    self._forget_uncommitted()
                    if key:
                        with self.engine.connect() as conn:
                            if stored := self._stored_reply(conn, context, request_hash):
                                return stored
                    time.sleep(random.uniform(0, min(0.002 * 2 ** attempt, 0.05)))
                    continue
                finally:
                    _saved_ids.reset(saved_token)
                self._committed(reply.body.get("position"))
                return reply
        except BaseException:
            self._forget_uncommitted()
            raise
        finally:
            _current_context.reset(ctx_token)
        raise ConcurrencyConflict("too many concurrent changes to the same records; retry")

    def _forget_uncommitted(self) -> None:
        """Belt and braces for the aggregate cache, which must only ever hold committed
        state (`find` refuses a load after a save, the one way uncommitted events could
        reach it). After a rollback, start a fresh cache anyway (a new object: LRUCache
        .clear() in eventsourcing 9.5 leaves its entries in place)."""
        cache = self.repository.cache
        if isinstance(cache, LRUCache):
            self.repository.cache = LRUCache(maxsize=cache.maxsize)

    def _stored_reply(self, conn: Connection, context: CommandContext,
                      request_hash: str | None) -> Reply | None:
        row = conn.execute(
            select(idempotency.c.request_hash, idempotency.c.status, idempotency.c.body)
            .where(idempotency.c.principal == context.actor,
                   idempotency.c.key == context.idempotency_key)
        ).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request",
                idempotency_key=context.idempotency_key)
        return Reply(row.status, json.loads(row.body))

    @staticmethod
    def _store_reply(conn: Connection, context: CommandContext, request_hash: str | None,
                     reply: Reply) -> None:
        conn.execute(idempotency.insert().values(
            principal=context.actor, key=context.idempotency_key,
            request_hash=request_hash or "", status=reply.status,
            body=json.dumps(reply.body), created_at=datetime.now(timezone.utc)))

    def _committed(self, position: int | None) -> None:
        if position is not None:
            for listener in self.commit_listeners:
                listener(position)

    # -- helpers for services ----------------------------------------------------

    def record(self, *aggregates: Aggregate) -> int | None:
        """Save the aggregates atomically; return the log position of the last new event."""
        saved = _saved_ids.get()
        if saved is not None:
            saved.update(aggregate.id for aggregate in aggregates)
        recordings = self.save(*aggregates)
        if not recordings:
            return None
        return max(r.notification.id for r in recordings)

    def load(self, aggregate_id: UUID, what: str, **details: Any) -> Any:
        found = self.find(aggregate_id)
        if found is None:
            raise NotFound(f"{what} not found", **details)
        return found

    def exists(self, aggregate_id: UUID) -> bool:
        return bool(self.recorder.select_events(aggregate_id, limit=1))

    def find(self, aggregate_id: UUID) -> Any | None:
        # Load, decide, save: loading what this command already saved would read its own
        # uncommitted events (and could leak them into the aggregate cache).
        assert aggregate_id not in (_saved_ids.get() or ()), "load after save in a command"
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    @staticmethod
    def _new_id(prefix: str) -> str:
        return prefix + uuid4().hex[:12].upper()

    def last_position(self) -> int:
        return self.recorder.max_notification_id() or 0
