"""The Fenxiao application: the event store plus the command runner every command goes
through (metadata, one transaction, idempotency, bounded retries on version conflicts)."""
from __future__ import annotations

import base64
import contextlib
import contextvars
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable
from uuid import UUID, uuid4

import psycopg2
import sqlalchemy.exc
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError as StoreIntegrityError
from eventsourcing.persistence import (JSONTranscoder, Mapper, MapperDeserialisationError,
                                      StoredEvent)
from eventsourcing.utils import get_topic
from sqlalchemy import func, select, tuple_
from sqlalchemy.engine import Connection

from commands.codec import FastJSONTranscoder
from commands.persistence import PooledFactory
from commands.pgtext import replace_nul_in_parameters
from commands.reads import read_connection
from commands.settings import Settings
from commands.storage import idempotency, insert_for, store_facts
from commands.writer import Ask, Decision, Batch, Writer, current_batch, resolve_positions
from domain.errors import DomainError, NotFound

if TYPE_CHECKING:
    from commands.writer_host import WriterLink


@dataclass(frozen=True)
class CommandContext:
    """Who asked for the command and why; recorded as metadata on every event it causes."""

    actor: str
    idempotency_key: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    command_id: str = field(default_factory=lambda: uuid4().hex)
    request_id: str | None = None  # the HTTP request's (api/access_log.py), if one asked

    def as_meta(self) -> dict[str, str | None]:
        meta = {
            "actor": self.actor,
            "command_id": self.command_id,
            "idempotency_key": self.idempotency_key,
            "correlation_id": self.correlation_id or self.command_id,
            "causation_id": self.causation_id,
        }
        if self.request_id is not None:
            meta["request_id"] = self.request_id
        return meta


SYSTEM = CommandContext(actor="system")
_current_context: contextvars.ContextVar[CommandContext] = contextvars.ContextVar(
    "fenxiao_command_context", default=SYSTEM)


def current_actor() -> str:
    """Who runs the command being decided: the token's name (or "system")."""
    return _current_context.get().actor


@dataclass
class _Touched:
    """The aggregates the running command has loaded and saved: refused or rolled back,
    the command evicts them (and only them) from the aggregate cache."""

    loaded: set[UUID] = field(default_factory=set)
    saved: set[UUID] = field(default_factory=set)


_touched: contextvars.ContextVar[_Touched | None] = contextvars.ContextVar(
    "fenxiao_touched", default=None)


# The application clock's time of the save being recorded (CoreApp.save).
_save_time: contextvars.ContextVar[datetime | None] = contextvars.ContextVar(
    "fenxiao_save_time", default=None)


class MetadataMapper(Mapper):
    """Stamps each new event with the metadata of the command that caused it, and `at`:
    when it was saved, by the application clock. That is the one clock "as of a time"
    goes by for stock, orders and ledger alike (commands/audit.py); every event of one
    save has the same `at`, so a time never falls inside a transaction."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        state = domain_event.__dict__
        if "meta" not in state:
            at = _save_time.get() or datetime.now(timezone.utc)
            state["meta"] = {**_current_context.get().as_meta(), "at": at}
        return super().to_stored_event(domain_event)


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"


class ConcurrencyConflict(DomainError):
    code = "concurrency_conflict"


class StoredRefusal(DomainError):
    """A repeat of a request that ran and was refused: the stored answer, replayed as it
    was first given (same status, same body) rather than run again."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        error = body["error"]
        super().__init__(error["message"], **error["details"])
        self.code = error["code"]
        self._status, self._body = status, body

    @property
    def status(self) -> int:
        return self._status

    def envelope(self) -> dict[str, Any]:
        return self._body


class LoadAfterSave(AssertionError):
    """A programming error (so an HTTP 500, never a stored refusal): a command loaded an
    aggregate it had already saved. Raised explicitly so `python -O` keeps the check."""


class StoreMismatch(Exception):
    """FENXIAO_CIPHER_KEY does not fit the store (missing, wrong, or given for a store
    that is not encrypted): serving would fail every load and write clear events beside
    encrypted ones, so nothing may start."""

    code = "cipher_key_mismatch"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


CIPHER_CANARY = "cipher_canary"  # the store_facts row
CANARY_PLAINTEXT = b"fenxiao cipher canary"
NOT_ENCRYPTED = "none"  # the canary of a store without a cipher key
KEY_MISSING = "this store is encrypted; set FENXIAO_CIPHER_KEY to its key"
KEY_WRONG = ("FENXIAO_CIPHER_KEY does not decrypt this store (it was encrypted with "
             "another key)")
KEY_FOR_CLEAR_STORE = ("FENXIAO_CIPHER_KEY is set but this store is not encrypted; unset "
                       "it to serve this store")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


class Pending(dict):  # type: ignore[type-arg]
    """A command's result that is recorded but not done (the first of two approvals):
    answered 202 rather than the command's own status."""

    status = 202


def reply_to(status: int, result: dict[str, Any]) -> Reply:
    return Reply(result.status if isinstance(result, Pending) else status, result)


def request_fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class CoreApp(Application):
    """Infrastructure shared by all services; the services are mixed in by `Fenxiao`."""

    name = "fenxiao"  # the event table is "fenxiao_events"

    def __init__(self, settings: Settings) -> None:
        env = {
            "PERSISTENCE_MODULE": get_topic(PooledFactory),
            "SQLALCHEMY_URL": settings.database_url,
            "CREATE_TABLE": "n",  # Alembic owns every table
            "MAPPER_TOPIC": get_topic(MetadataMapper),
            # Hot aggregates stay in memory and are fast-forwarded from the store on each
            # load (+30 % commands/s measured); see `_evict` for its one risk.
            "AGGREGATE_CACHE_MAXSIZE": "10000",
        }
        if settings.cipher_key:
            env["CIPHER_TOPIC"] = "eventsourcing.cryptography:AESCipher"
            env["CIPHER_KEY"] = settings.cipher_key
        super().__init__(env)
        self.settings = settings
        self.datastore = self.recorder.datastore  # type: ignore[attr-defined]
        self.engine = self.datastore.engine
        replace_nul_in_parameters(self.engine)  # old events may hold NUL text
        self.commit_listeners: list[Callable[[int], None]] = []
        # The one clock of the application; tests and replays set their own.
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        self._store_checked = False
        self.writer: Writer | None = None
        # In the API processes of `serve --workers N`: the way to the one writer process
        # of the server (commands/writer_host.py); None: commands are decided here.
        self.writer_link: WriterLink | None = None

    def close(self) -> None:
        self.stop_writer()
        super().close()
        self.engine.dispose()

    def start_writer(self, **options: Any) -> Writer:
        """From now on, `execute` hands commands to one writer thread that decides them in
        order and commits them in batches (commands/writer.py)."""
        if self.writer is None:
            self.writer = Writer(self, **options).start()
        return self.writer

    def stop_writer(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.stop()

    def construct_transcoder(self) -> JSONTranscoder:
        transcoder = FastJSONTranscoder()  # the library's, decoding faster (commands/codec.py)
        self.register_transcodings(transcoder)
        return transcoder

    # -- the store and its cipher key ----------------------------------------------

    def check_store(self) -> None:
        """Refuse a store that FENXIAO_CIPHER_KEY does not fit (raises StoreMismatch).
        The first use records a canary: a known text encrypted with the key, or "none"
        for a store kept in the clear. A store that already has events but no canary
        (older than the canary) is judged by decoding its first event."""
        if self._store_checked:
            return
        canary = self._read_canary()
        if canary is None:
            self._check_first_event()
            canary = self._record_canary()
        self._check_canary(canary)
        self._store_checked = True

    def store_status(self) -> str:
        """"ok", or why the store cannot be served with this key (for /health)."""
        try:
            self.check_store()
        except StoreMismatch as mismatch:
            return mismatch.message
        return "ok"

    def _read_canary(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(store_facts.c.value)
                                .where(store_facts.c.name == CIPHER_CANARY)).scalar()

    def _record_canary(self) -> str:
        """Write our canary unless a concurrent first start wrote its own; return the
        one that stands (ours or theirs: it is the one to judge)."""
        cipher = self.mapper.cipher
        value = (base64.b64encode(cipher.encrypt(CANARY_PLAINTEXT)).decode()
                 if cipher else NOT_ENCRYPTED)
        with self.engine.begin() as conn:
            conn.execute(insert_for(conn, store_facts)
                         .values(name=CIPHER_CANARY, value=value)
                         .on_conflict_do_nothing(index_elements=["name"]))
        return self._read_canary() or value

    def _check_canary(self, canary: str) -> None:
        cipher = self.mapper.cipher
        if canary == NOT_ENCRYPTED:
            if cipher:
                raise StoreMismatch(KEY_FOR_CLEAR_STORE)
            return
        if not cipher:
            raise StoreMismatch(KEY_MISSING)
        try:
            fits = cipher.decrypt(base64.b64decode(canary)) == CANARY_PLAINTEXT
        except ValueError:  # the AES-GCM tag does not verify: another key
            fits = False
        if not fits:
            raise StoreMismatch(KEY_WRONG)

    def _check_first_event(self) -> None:
        first = self.recorder.select_notifications(start=None, limit=1)
        if not first:
            return  # a new store: it takes the key it is first used with
        try:
            self.mapper.to_domain_event(first[0])
        except MapperDeserialisationError:
            raise StoreMismatch(self._why_undecodable(first[0].state)) from None

    def _why_undecodable(self, state: bytes) -> str:
        if not self.mapper.cipher:
            return KEY_MISSING
        try:
            self.mapper.transcoder.decode(state)
        except ValueError:
            return KEY_WRONG
        return KEY_FOR_CLEAR_STORE  # it reads without the key: it was never encrypted

    # -- the command runner ------------------------------------------------------

    def execute(self, command: Callable[[], dict[str, Any]], *, status: int = 200,
                context: CommandContext = SYSTEM, request_hash: str | None = None) -> Reply:
        """Run `command` (load, decide, save) in one transaction, with its idempotency
        record if a key was given, retrying on optimistic-concurrency conflicts; through
        the writer when one runs (the same outcome, committed with others)."""
        self.check_store()  # once per process: never write beside events we cannot read
        writer = self.writer
        if writer is not None and current_batch() is None and not writer.on_writer_thread():
            return writer.submit(Ask(command, status, context, request_hash))
        ctx_token = _current_context.set(context)
        try:
            for attempt in range(self.settings.command_attempts):
                reply = self._attempt(command, status, context, request_hash)
                if reply is not None:
                    return reply
                time.sleep(random.uniform(0, min(0.002 * 2 ** attempt, 0.05)))
        finally:
            _current_context.reset(ctx_token)
        raise ConcurrencyConflict("too many concurrent changes to the same records; retry")

    def _attempt(self, command: Callable[[], dict[str, Any]], status: int,
                 context: CommandContext, request_hash: str | None) -> Reply | None:
        """One try: the reply, or None when a concurrent writer changed an aggregate the
        command loaded (try again). A refusal leaves as its DomainError."""
        key = context.idempotency_key
        touched, refusal = _Touched(), None
        touched_token = _touched.set(touched)
        try:
            with self.datastore.transaction(commit=True) as session:
                conn = session.connection()
                if key and (stored := self._stored_reply(conn, context, request_hash)):
                    return stored
                try:
                    reply = reply_to(status, command())
                except DomainError as error:
                    refusal = error
                    raise
                if key:
                    self._store_reply(conn, context, request_hash, reply)
        except (sqlalchemy.exc.IntegrityError, StoreIntegrityError):
            # A concurrent writer won: either the same idempotency key (answer with its
            # reply) or a newer version of an aggregate we loaded (try again).
            self._evict(touched)
            return self._stored_reply_now(context, request_hash) if key else None
        except BaseException as error:
            self._evict(touched)
            if key and error is refusal and refusal.is_conflict:
                if (winner := self._store_refusal(context, request_hash, refusal)):
                    return winner
            raise
        finally:
            _touched.reset(touched_token)
        self._committed(reply.body.get("position"))
        return reply

    def _evict(self, touched: _Touched) -> None:
        """The aggregate cache must only ever hold committed state; after a rollback,
        drop what this command loaded or saved (the next load reads it afresh) and keep
        every other hot aggregate. (`find` also refuses a load after a save, the one way
        uncommitted events could reach the cache.)"""
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id in touched.loaded | touched.saved:
            try:
                cache.get(aggregate_id, evict=True)  # the library's way to drop one key
            except KeyError:
                pass

    def _store_refusal(self, context: CommandContext, request_hash: str | None,
                       refusal: DomainError) -> Reply | None:
        """Keep a refusal with its key, in its own transaction after the rollback, so a
        repeat gets the same 409 instead of running again once the facts have changed.
        If a concurrent repeat stored its reply first, that reply is the answer: returned
        if it was a success, raised (StoredRefusal) if a refusal."""
        try:
            with self.datastore.transaction(commit=True) as session:
                self._store_reply(session.connection(), context, request_hash,
                                  Reply(refusal.status, refusal.envelope()))
        except (sqlalchemy.exc.IntegrityError, StoreIntegrityError):
            return self._stored_reply_now(context, request_hash)
        return None

    def _stored_reply_now(self, context: CommandContext, request_hash: str | None
                          ) -> Reply | None:
        with read_connection(self.engine) as conn:
            return self._stored_reply(conn, context, request_hash)

    def _stored_reply(self, conn: Connection, context: CommandContext,
                      request_hash: str | None) -> Reply | None:
        row = conn.execute(
            select(idempotency.c.request_hash, idempotency.c.status, idempotency.c.body)
            .where(idempotency.c.principal == context.actor,
                   idempotency.c.key == context.idempotency_key)
        ).first()
        if row is None:
            return None
        if row.request_hash != (request_hash or ""):  # stored as "" when none was given
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request",
                idempotency_key=context.idempotency_key)
        if row.status >= 400:
            raise StoredRefusal(row.status, json.loads(row.body))
        return Reply(row.status, json.loads(row.body))

    @staticmethod
    def _store_reply(conn: Connection, context: CommandContext, request_hash: str | None,
                     reply: Reply) -> None:
        conn.execute(idempotency.insert().values(
            **CoreApp._reply_row(context, request_hash, reply)))

    @staticmethod
    def _reply_row(context: CommandContext, request_hash: str | None, reply: Reply
                   ) -> dict[str, Any]:
        return {"principal": context.actor, "key": context.idempotency_key,
                "request_hash": request_hash or "", "status": reply.status,
                "body": json.dumps(reply.body), "created_at": datetime.now(timezone.utc)}

    # -- the writer's side: a command decided inside a batch --------------------------

    def decide_in_batch(self, batch: Batch, ask: Ask) -> Decision:
        """Decide one command of the writer's batch as `_attempt` would, without writing:
        its events wait in the decision for the batch's commit."""
        decision = Decision(ask)
        context, key = ask.context, ask.context.idempotency_key
        batch.current = decision
        ctx_token = _current_context.set(context)
        try:
            if key and self._answered_before(batch, decision):
                return decision
            try:
                decision.reply = reply_to(ask.status, ask.decide())
                decision.keep = bool(key)
            except DomainError as refusal:
                decision.refusal = refusal
                decision.keep = bool(key) and refusal.is_conflict
        except BaseException as error:  # IdempotencyKeyReused, StoredRefusal, a bug
            decision.refusal = error
        finally:
            _current_context.reset(ctx_token)
            batch.current = None
        return decision

    def _answered_before(self, batch: Batch, decision: Decision) -> bool:
        """A key seen before, in this batch or stored: the decision takes that answer."""
        context, request_hash = decision.ask.context, decision.ask.request_hash
        earlier = batch.keys.get((context.actor, context.idempotency_key))
        if earlier is not None and earlier.keep:  # a refusal not kept leaves the key free
            if earlier.ask.request_hash != request_hash:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used with a different request",
                    idempotency_key=context.idempotency_key)
            decision.same_as = earlier
            return True
        stored = self._stored_reply_now(context, request_hash)
        if stored is not None:
            decision.reply = stored
            return True
        batch.keys[(context.actor, context.idempotency_key)] = decision
        return False

    def commit_decisions(self, decisions: list[Decision], changed: dict[UUID, Any],
                         seen: int | None = None) -> list[tuple[int, UUID, int]] | None:
        """One transaction: every decided command's events in order, the replies kept
        with their keys, the snapshots due. Raises IntegrityError when a concurrent
        writer recorded a version or a key first (nothing is then written). With `seen`
        (a log position), on PostgreSQL: returns the log's tail up to these events,
        read in the same round trip: (position, aggregate id, version) of every event
        after `seen`, others' and these; else None."""
        stored = [event for decision in decisions for event in decision.events]
        kept = [decision for decision in decisions if decision.keep]
        tail = None
        if not stored and not kept:
            return tail
        with self.datastore.transaction(commit=True) as session:
            conn = session.connection()
            if stored:
                positions, tail = self._insert_events(conn, stored, seen)
                self._place(decisions, positions)
            if kept:
                conn.execute(idempotency.insert(), [self._reply_row(
                    decision.ask.context, decision.ask.request_hash,
                    self._outcome(decision)) for decision in kept])
            if stored:
                self._snapshot(changed, stored)
        return tail

    def _insert_events(self, conn: Connection, stored: list[StoredEvent], seen: int | None
                       ) -> tuple[list[int], list[tuple[int, UUID, int]] | None]:
        """Insert `stored` in order: their log positions, and the log's tail after `seen`
        (see commit_decisions). On PostgreSQL in one round trip: the library's lock of
        the event table (so positions commit in order), its notification to listeners
        (sent at commit), one multi-row INSERT (the rows exactly as its recorder writes
        them) and, in the same statement, the events others committed after `seen` (the
        lock is held: nothing can come between them and ours). Elsewhere, through the
        library's recorder, without the tail."""
        if conn.dialect.name != "postgresql":
            return list(self.recorder.insert_events(stored)), None
        table = self.recorder.events_table_name
        rows = ", ".join(["(%s::uuid, %s, %s, %s)"] * len(stored))
        values = [value for event in stored for value in (
            str(event.originator_id), event.originator_version, event.topic,
            psycopg2.Binary(event.state))]
        # The data-modifying CTE's rows are not visible to the SELECT beside it (one
        # snapshot for the statement): the second part is others' events only.
        others = (f" UNION ALL SELECT id, originator_id, originator_version, FALSE "
                  f"FROM {table} WHERE id > %s" if seen is not None else "")
        returned = conn.exec_driver_sql(
            f"LOCK TABLE {table} IN EXCLUSIVE MODE; NOTIFY {self.recorder.channel_name}; "
            f"WITH ours AS (INSERT INTO {table} (originator_id, originator_version, topic, "
            f"state) VALUES {rows} RETURNING id, originator_id, originator_version) "
            f"SELECT id, originator_id, originator_version, TRUE FROM ours{others}",
            tuple(values) + ((seen,) if seen is not None else ())).all()
        position = {(UUID(str(originator_id)), version): event_id
                    for event_id, originator_id, version, mine in returned if mine}
        tail = sorted((event_id, UUID(str(originator_id)), version)
                      for event_id, originator_id, version, _ in returned)
        return ([position[(event.originator_id, event.originator_version)]
                 for event in stored], tail if seen is not None else None)

    @staticmethod
    def _place(decisions: list[Decision], positions: Any) -> None:
        end = 0
        for decision in decisions:
            if decision.events:
                end += len(decision.events)
                decision.position.value = positions[end - 1]

    @staticmethod
    def _outcome(decision: Decision) -> Reply:
        if decision.refusal is not None:
            refusal = decision.refusal
            return Reply(refusal.status, refusal.envelope())  # type: ignore[attr-defined]
        decision.reply = Reply(decision.reply.status, resolve_positions(decision.reply.body))
        return decision.reply

    def _snapshot(self, changed: dict[UUID, Any], stored: list[StoredEvent]) -> None:
        """Snapshot, from memory, each changed aggregate that passed a multiple of its
        interval (what the library's save does by reading it back from the store)."""
        due = {event.originator_id for event in stored
               if (aggregate := changed.get(event.originator_id)) is not None
               and (interval := self.snapshotting_intervals.get(type(aggregate)))
               and event.originator_version % interval == 0}
        snapshots = []
        for aggregate_id in due:
            aggregate = changed[aggregate_id]
            snapshot_class = getattr(type(aggregate), "Snapshot", type(self).snapshot_class)
            snapshots.append(snapshot_class.take(aggregate))
        if snapshots and self.snapshots is not None:
            self.snapshots.put(snapshots)

    def taken_since(self, decisions: list[Decision]
                    ) -> tuple[set[UUID], set[tuple[str, str | None]]]:
        """After a batch's commit failed: the aggregates a concurrent writer moved to or
        past a version the batch recorded, and the keys it stored first."""
        first: dict[UUID, int] = {}
        for decision in decisions:
            for event in decision.events:
                first.setdefault(event.originator_id, event.originator_version)
        keys = {(d.ask.context.actor, d.ask.context.idempotency_key)
                for d in decisions if d.keep}
        events = self.recorder.events_record_cls.__table__
        with self.engine.connect() as conn:
            moved = {originator_id for originator_id, version in conn.execute(
                select(events.c.originator_id, func.max(events.c.originator_version))
                .where(events.c.originator_id.in_(first))
                .group_by(events.c.originator_id)) if version >= first[originator_id]}
            taken = {(principal, key) for principal, key in conn.execute(
                select(idempotency.c.principal, idempotency.c.key)
                .where(tuple_(idempotency.c.principal, idempotency.c.key).in_(keys)))
            } if keys else set()
        return moved, taken

    def exclusive_transaction(self) -> Any:
        """A transaction that holds the event table's write lock from its start (on
        PostgreSQL; SQLite has one writer at a time anyway): nothing can be recorded by
        anyone else until it ends."""
        @contextlib.contextmanager
        def locked() -> Any:
            with self.datastore.transaction(commit=True) as session:
                conn = session.connection()
                if conn.dialect.name == "sqlite":  # its write lock, now, not at the insert
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    self.recorder._lock_table(session)  # the library's own lock for writes
                yield session
        return locked()

    def answer_decisions(self, decisions: list[Decision]) -> None:
        last = None
        for decision in decisions:
            answered = decision.same_as or decision
            if answered.refusal is not None:
                decision.ask.answer.set_exception(answered.refusal)
                continue
            reply = Reply(answered.reply.status, resolve_positions(answered.reply.body))
            decision.ask.answer.set_result(reply)
            if decision.position.value is not None:
                last = max(last or 0, decision.position.value)
        self._committed(last)

    def _committed(self, position: int | None) -> None:
        if position is not None:
            for listener in self.commit_listeners:
                listener(position)

    # -- helpers for services ----------------------------------------------------

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """The library's save, with the application clock's time for its events' `at`."""
        token = _save_time.set(self._utc_now())
        try:
            return super().save(*objs, **kwargs)
        finally:
            _save_time.reset(token)

    def _utc_now(self) -> datetime:
        now = self.clock()
        return now.astimezone(timezone.utc) if now.tzinfo else now.replace(tzinfo=timezone.utc)

    def record(self, *aggregates: Aggregate) -> int | None:
        """Save the aggregates atomically; return the log position of the last new event."""
        batch = current_batch()
        if batch is not None:
            return batch.record(aggregates, self._stored_now)  # type: ignore[return-value]
        touched = _touched.get()
        if touched is not None:
            touched.saved.update(aggregate.id for aggregate in aggregates)
        recordings = self.save(*aggregates)
        if not recordings:
            return None
        return max(r.notification.id for r in recordings)

    def load(self, aggregate_id: UUID, what: str, **details: Any) -> Any:
        found = self.find(aggregate_id)
        if found is None:
            raise NotFound(f"{what} not found", **details)
        return found

    def _stored_now(self, events: list[Any]) -> list[StoredEvent]:
        """`events` as stored events, stamped as `save` stamps them (one `at` a save)."""
        token = _save_time.set(self._utc_now())
        try:
            return [self.mapper.to_stored_event(event) for event in events]
        finally:
            _save_time.reset(token)

    def read_committed(self, aggregate_id: UUID) -> None:
        """Before a command reads `aggregate_id`'s events from the store itself: inside a
        writer's batch that changed it, the batch is committed first."""
        batch = current_batch()
        if batch is not None:
            batch.require_committed(aggregate_id)

    def exists(self, aggregate_id: UUID) -> bool:
        batch = current_batch()
        if batch is not None:
            known = batch.exists(aggregate_id)
            return batch.stored(aggregate_id) if known is None else known
        return bool(self.recorder.select_events(aggregate_id, limit=1))

    def find(self, aggregate_id: UUID) -> Any | None:
        batch = current_batch()
        if batch is not None:
            return batch.find(aggregate_id)
        # Load, decide, save: loading what this command already saved would read its own
        # uncommitted events (and could leak them into the aggregate cache).
        touched = _touched.get()
        if touched is not None:
            if aggregate_id in touched.saved:
                raise LoadAfterSave(f"aggregate {aggregate_id} loaded after it was saved "
                                    "in the same command")
            touched.loaded.add(aggregate_id)
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    @staticmethod
    def _new_id(prefix: str) -> str:
        return prefix + uuid4().hex[:12].upper()

    def last_position(self) -> int:
        return self.recorder.max_notification_id() or 0
