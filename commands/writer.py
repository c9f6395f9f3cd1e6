"""The writer: one per process, it decides the commands of concurrent requests in order
against the aggregates it holds in memory and commits many commands' events in one
transaction (group commit).

Why: a command's cost used to be a dozen round trips (every load fast-forwarded the
cached aggregate from the store, then a transaction of its own), and concurrent commands
on one hot aggregate (a flash sale's stock item) collided, rolled back and retried. Here
the writer is the only code in its process that decides commands, so it can trust what
it holds: an aggregate is read from the store once, then kept and mutated in place by the
commands that touch it. Writes of other processes (and of this process's code that does
not go through the writer) are noticed by reading the log's tail, one cheap query per
batch, and applied to what it holds; a write that races past that check fails the batch's
commit on the store's (aggregate, version) key, and then only the commands that touched
what it moved are decided again, holding the event table's lock (see `decide`).

A batch is a list of commands taken from the queue as they came (no waiting: while one
batch commits, the next one gathers). Each command is decided alone:
- a refusal (DomainError) is answered alone and changes nothing: the aggregates it
  mutated are dropped (reloaded when next needed). If an earlier command of the batch
  changed one of them too, the earlier commands are committed first, so dropping loses
  none of their work;
- a success leaves its events mapped to stored events (with its own metadata and save
  time), its reply waiting for the positions the commit will give them.
The commit inserts every event of the batch in command order (one lock of the event
table, one insert, one notification), the idempotency replies and the snapshots due;
then every waiting request gets its answer. Nothing is acknowledged before its commit,
so a kill at any point loses no acknowledged command, and a retry with its key after a
crash either finds the stored reply or runs afresh.
"""
from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator
from uuid import UUID

import sqlalchemy.exc
from eventsourcing.persistence import IntegrityError as StoreIntegrityError
from eventsourcing.persistence import StoredEvent
from sqlalchemy import bindparam, func, literal, select, union_all
from sqlalchemy.engine import Connection

from commands.reads import read_connection


DEFAULT_MAX_BATCH = 64
# Aggregates held: the hot ones (stock items, products) stay; an order placed a few
# seconds ago is read again in one query if it is paid. More would cost more than the
# reads they save: every held object is walked by each full garbage collection (hot
# orders at 32 clients, 30,000 placed: p99 164 ms holding 20,000, 78 ms holding 2,000).
DEFAULT_HELD = 2_000
REPORT_FRESH_S = 0.01  # a commit's tail stands for the next batch's look this long
CONTENDED_S = 2.0  # after a conflict with another process, lock first for this long


class CommitFirst(Exception):
    """Raised by a command that must read from the store what earlier commands of its
    batch changed: the writer commits those first, then decides the command again."""


@dataclass
class Ask:
    """One command waiting for the writer: what to decide and for whom."""

    decide: Callable[[], dict[str, Any]]
    status: int
    context: Any  # commands.app.CommandContext
    request_hash: str | None
    answer: Future = field(default_factory=Future)


class PendingPosition:
    """What `record` returns inside a batch: the log position of the command's last event,
    known only once the batch commits. Replies carry it until then (`resolve_positions`)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: int | None = None

    def __repr__(self) -> str:
        return f"PendingPosition({self.value})"


def resolve_positions(body: Any) -> Any:
    if isinstance(body, PendingPosition):
        return body.value
    if isinstance(body, dict):
        return {key: resolve_positions(value) for key, value in body.items()}
    if isinstance(body, list):
        return [resolve_positions(value) for value in body]
    return body


class HeldAggregates:
    """The aggregates the writer keeps, most recently used last, at most `maxsize`; and
    the ids it found no aggregate for (most lookups of a placement are of indexes that
    do not exist yet: a SKU's backorder queue, a customer's binding), as many."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._held: OrderedDict[UUID, Any] = OrderedDict()
        self._absent: OrderedDict[UUID, None] = OrderedDict()

    def absent(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self._absent

    def put_absent(self, aggregate_id: UUID) -> None:
        self._absent[aggregate_id] = None
        while len(self._absent) > self.maxsize:
            self._absent.popitem(last=False)

    def forget_absent(self, aggregate_ids: Iterable[UUID] | None = None) -> None:
        if aggregate_ids is None:
            self._absent.clear()
        for aggregate_id in aggregate_ids or ():
            self._absent.pop(aggregate_id, None)

    def get(self, aggregate_id: UUID) -> Any | None:
        aggregate = self._held.get(aggregate_id)
        if aggregate is not None:
            self._held.move_to_end(aggregate_id)
        return aggregate

    def put(self, aggregate: Any) -> None:
        self._absent.pop(aggregate.id, None)
        self._held[aggregate.id] = aggregate
        self._held.move_to_end(aggregate.id)
        while len(self._held) > self.maxsize:
            self._held.popitem(last=False)

    def drop(self, aggregate_ids: Iterable[UUID]) -> None:
        for aggregate_id in aggregate_ids:
            self._held.pop(aggregate_id, None)

    def __contains__(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self._held

    def __len__(self) -> int:
        return len(self._held)

    def has_absent(self) -> bool:
        return bool(self._absent)


@dataclass
class Decision:
    """One command decided in the batch: its reply (or refusal) and its stored events."""

    ask: Ask
    reply: Any = None  # commands.app.Reply
    refusal: BaseException | None = None
    events: list[StoredEvent] = field(default_factory=list)
    position: PendingPosition = field(default_factory=PendingPosition)
    same_as: "Decision | None" = None  # a repeat of a key decided earlier in the batch
    keep: bool = False  # its reply (or 409) is stored with its Idempotency-Key
    loaded: set[UUID] = field(default_factory=set)
    saved: dict[UUID, Any] = field(default_factory=dict)


_batch: contextvars.ContextVar["Batch | None"] = contextvars.ContextVar(
    "fenxiao_batch", default=None)


def current_batch() -> "Batch | None":
    return _batch.get()


class Batch:
    """The commands decided since the last commit, and the aggregates they changed."""

    def __init__(self, writer: "Writer") -> None:
        self.writer = writer
        self.decisions: list[Decision] = []
        self.changed: dict[UUID, Any] = {}  # aggregates with events in this batch
        self.keys: dict[tuple[str, str], Decision] = {}
        self.current: Decision | None = None

    # -- what the application's find / record / exists do inside a batch ----------

    def find(self, aggregate_id: UUID) -> Any | None:
        decision = self._decision()
        if aggregate_id in decision.saved:
            from commands.app import LoadAfterSave
            raise LoadAfterSave(f"aggregate {aggregate_id} loaded after it was saved "
                                "in the same command")
        decision.loaded.add(aggregate_id)
        return self.writer.aggregate(aggregate_id)

    def exists(self, aggregate_id: UUID) -> bool | None:
        """True or False when the writer knows; None: ask the store."""
        held = self.writer.held
        if aggregate_id in held:
            return True
        return False if held.absent(aggregate_id) else None

    def stored(self, aggregate_id: UUID) -> bool:
        """Whether the store has the aggregate (what `exists` asks when the writer does
        not know); remembered when it has not."""
        found = self.writer.stored(aggregate_id)
        if not found:
            self.writer.held.put_absent(aggregate_id)
        return found

    def require_committed(self, aggregate_id: UUID) -> None:
        if aggregate_id in self.changed:
            raise CommitFirst(aggregate_id)

    def record(self, aggregates: Iterable[Any],
               to_stored: Callable[[list[Any]], list[StoredEvent]]
               ) -> PendingPosition | None:
        decision = self._decision()
        events = []
        for aggregate in aggregates:
            decision.saved[aggregate.id] = aggregate
            events += aggregate.collect_events()
        if not events:
            return None
        decision.events += to_stored(events)
        for aggregate in decision.saved.values():
            self.writer.held.put(aggregate)
        return decision.position

    def _decision(self) -> Decision:
        assert self.current is not None, "find/record outside a command of the batch"
        return self.current


class Writer:
    """Takes commands from any thread (`submit`) and decides them on its own thread."""

    def __init__(self, app: Any, *, max_batch: int = DEFAULT_MAX_BATCH,
                 held: int = DEFAULT_HELD) -> None:
        self.app = app
        self.max_batch = max_batch
        self.held = HeldAggregates(held)
        self._queue: queue.SimpleQueue[Ask | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fenxiao-writer",
                                        daemon=True)
        self._seen = 0  # the log position read up to (the tail: forget_changed_elsewhere)
        # The tail our last commit read in its own round trip (PostgreSQL), not applied
        # yet, and when: a batch that starts soon after starts from it instead of asking
        # the store again.
        self._reported: list[tuple[int, UUID, int]] | None = None
        self._reported_at = 0.0
        self._stopped = threading.Event()
        self._statements = _Statements(app)
        self._contended_until = 0.0  # until then, batches are decided holding the lock
        # Inside `_decide_exclusively`: the committed decisions, answered at its end.
        self._deferred: list[list[Decision]] | None = None

    def start(self) -> "Writer":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)
        self._stopped.set()

    def on_writer_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, ask: Ask) -> Any:
        """Queue `ask` and wait for its answer (a Reply, or its exception raised)."""
        if self._stopped.is_set() or not self._thread.is_alive():
            raise RuntimeError("the writer is not running")
        self._queue.put(ask)
        return ask.answer.result()

    # -- the writer's thread -------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            asks = [first]
            while len(asks) < self.max_batch:
                try:
                    ask = self._queue.get_nowait()
                except queue.Empty:
                    break
                if ask is None:
                    self._queue.put(None)  # stop after this batch
                    break
                asks.append(ask)
            try:
                self.decide(asks)
            except BaseException as error:  # a bug: nobody may wait for ever
                self.held = HeldAggregates(self.held.maxsize)
                for ask in asks:
                    if not ask.answer.done():
                        ask.answer.set_exception(error)

    def decide(self, asks: list[Ask]) -> None:
        """Decide `asks` in order and commit them; every ask is answered when this
        returns. First optimistically (the event table locked only to commit); the
        commands whose commit met a concurrent writer's are decided again holding the
        table's lock from the start, so the second time nobody can write in between and
        a flash sale shared by several processes never turns into a storm of retries."""
        if time.monotonic() < self._contended_until:
            self._decide_exclusively(asks)
            return
        self.forget_changed_elsewhere()
        waiting = self._decide_and_commit(asks)
        if waiting:
            # Another process writes the same aggregates: for a while, take the lock
            # first (a conflict costs a reload of what the batch changed; waiting for the
            # lock costs only the other writer's commit).
            self._contended_until = time.monotonic() + CONTENDED_S
            self._decide_exclusively(waiting)

    def _decide_exclusively(self, asks: list[Ask]) -> None:
        self._deferred = []
        try:
            with self.app.exclusive_transaction():
                self.forget_changed_elsewhere(look=True)  # holding the lock: all of it
                waiting = self._decide_and_commit(asks)
                if waiting:  # only code outside every writer can still collide
                    from commands.app import ConcurrencyConflict
                    raise ConcurrencyConflict("too many concurrent changes to the same "
                                              "records; retry")
        except BaseException as error:
            # The transaction is lost with whatever it held: forget everything (rare).
            self.held = HeldAggregates(self.held.maxsize)
            for ask in asks:
                if not ask.answer.done():
                    ask.answer.set_exception(error)
            return
        finally:
            deferred, self._deferred = self._deferred, None
        for decisions in deferred:  # committed now: answer
            self.app.answer_decisions(decisions)

    def _decide_and_commit(self, asks: list[Ask]) -> list[Ask]:
        """Decide and commit; return the asks to decide again (their commit met a
        concurrent writer's), the others answered."""
        batch = Batch(self)
        token = _batch.set(batch)
        try:
            index = 0
            while index < len(asks):
                decision = self.app.decide_in_batch(batch, asks[index])
                again = isinstance(decision.refusal, CommitFirst)
                if not again:
                    batch.decisions.append(decision)
                if decision.refusal is None:
                    batch.changed.update(decision.saved)
                # What the command changed and must not keep: all it changed if it was
                # refused, else what it changed without saving (dropped as the library's
                # copies were).
                unkept = self._changed_by(decision)
                if decision.refusal is None:
                    unkept -= decision.saved.keys()
                else:
                    decision.events = []
                earlier = batch.changed.keys() - decision.saved.keys()
                if again or unkept & earlier:
                    # Earlier commands of the batch changed what this one must drop (or
                    # it must read their work from the store): commit them first.
                    retry = self._commit(batch, unkept)
                    self.held.drop(unkept)
                    if retry:
                        return retry + asks[index + (0 if again else 1):]
                    batch = Batch(self)
                    _batch.set(batch)
                else:
                    self.held.drop(unkept)
                if not again:
                    index += 1
            return self._commit(batch)
        finally:
            _batch.reset(token)

    def _changed_by(self, decision: Decision) -> set[UUID]:
        """The aggregates the command recorded, and those it loaded and left changed."""
        return set(decision.saved) | {
            aggregate_id for aggregate_id in decision.loaded
            if (held := self.held.get(aggregate_id)) is not None and held.pending_events}

    def _commit(self, batch: Batch, unkept: set[UUID] = frozenset()) -> list[Ask]:
        """Commit the batch's decisions and answer them; on a conflict with a concurrent
        writer, drop what they changed and return their asks to decide again. `unkept`:
        aggregates changed by a refused command, never snapshotted."""
        decisions = batch.decisions
        snapshot = {key: value for key, value in batch.changed.items() if key not in unkept}
        self._reported = None
        try:
            tail = self.app.commit_decisions(
                decisions, snapshot, seen=None if self._deferred is not None else self._seen)
        except (sqlalchemy.exc.IntegrityError, StoreIntegrityError):
            if self._deferred is not None:
                raise  # inside the exclusive transaction: it is lost as a whole
            return self._after_conflict(batch, unkept)
        except BaseException as error:
            if self._deferred is not None:
                raise
            self.held.drop(batch.changed)
            for decision in decisions:
                if not decision.ask.answer.done():
                    decision.ask.answer.set_exception(error)
            return []
        if self._deferred is not None:
            self._deferred.append(decisions)  # answered once the transaction commits
        else:
            self._reported, self._reported_at = tail, time.monotonic()
            self.app.answer_decisions(decisions)
        return []

    def _after_conflict(self, batch: Batch, unkept: set[UUID]) -> list[Ask]:
        """A concurrent writer recorded first an aggregate version or a key the batch
        needed. The commands that touched those, and every later command that touched
        what they changed, are returned to decide again; the others commit now, as
        decided (an earlier command never depends on a later one)."""
        self.held.forget_absent()  # another writer may have created one of them
        moved, taken = self.app.taken_since(batch.decisions)
        again: list[Decision] = []
        for decision in batch.decisions:  # in order: a command depends on earlier ones
            if _touched(decision) & moved or decision.same_as in again or (
                    decision.keep and _key(decision) in taken):
                again.append(decision)
                moved |= decision.saved.keys()  # what later commands read of it goes too
        if not again:  # nothing to blame (not expected): decide them all again
            again = list(batch.decisions)
        for decision in again:
            self.held.drop(decision.saved)
        rest = Batch(self)
        rest.decisions = [d for d in batch.decisions if d not in again]
        rest.changed = {key: value for key, value in batch.changed.items()
                        if key not in moved}
        retry = self._commit(rest, unkept) if rest.decisions else []
        order = {id(d.ask): n for n, d in enumerate(batch.decisions)}
        return sorted(retry + [d.ask for d in again], key=lambda ask: order[id(ask)])

    # -- what the writer holds -------------------------------------------------------

    def aggregate(self, aggregate_id: UUID) -> Any | None:
        held = self.held.get(aggregate_id)
        if held is not None or self.held.absent(aggregate_id):
            return held
        aggregate = None
        for stored in self._stored(aggregate_id):
            aggregate = self.app.mapper.to_domain_event(stored).mutate(aggregate)
        if aggregate is None:
            self.held.put_absent(aggregate_id)
            return None
        self.held.put(aggregate)
        return aggregate

    def stored(self, aggregate_id: UUID) -> bool:
        with self._reading() as conn:
            return conn.execute(self._statements.exists,
                                {"id": aggregate_id}).first() is not None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """Where the writer reads the store: inside its exclusive transaction, on that
        transaction (it sees what the batch wrote before a cut); otherwise on a read
        connection (one round trip a query, no transaction around it)."""
        if self._deferred is None:
            with read_connection(self.app.engine) as conn:
                yield conn
        else:
            with self.app.datastore.transaction(commit=False) as session:
                yield session.connection()

    def _stored(self, aggregate_id: UUID) -> list[StoredEvent]:
        """The aggregate's latest snapshot (if any) and its events after it, in one round
        trip (the library's repository asks twice: most aggregates have no snapshot)."""
        with self._reading() as conn:
            rows = conn.execute(self._statements.load, {"id": aggregate_id}).all()
        return [StoredEvent(originator_id=aggregate_id, originator_version=version,
                            topic=topic, state=bytes(state)) for version, topic, state in rows]

    def forget_changed_elsewhere(self, look: bool = False) -> None:
        """Read the log's tail since the last look: bring each held aggregate that someone
        else moved on up to date with their events (one query for all of them: a hot
        stock item written by two processes is never reloaded whole), and forget what it
        believed absent if it was created since. Our own events are held already.
        The tail the last commit read in its round trip stands for a look if it is
        younger than REPORT_FRESH_S (under load, batches follow each other within that:
        what others record in between is no older than what they record while a batch
        is decided, which only the store's keys catch either way), unless `look`."""
        reported, self._reported = self._reported, None
        if time.monotonic() - self._reported_at > REPORT_FRESH_S:
            reported = None
        if not len(self.held) and not self.held.has_absent():
            self._seen = self.app.last_position()
            return
        behind = []
        for position, aggregate_id, version in (
                self._tail() if look or reported is None else reported):
            held = self.held.get(aggregate_id)
            if held is not None and held.version < version:
                behind.append(position)
            elif held is None:
                self.held.forget_absent([aggregate_id])
            self._seen = max(self._seen, position)
        if behind:
            self._fast_forward(behind)

    def _tail(self) -> list[tuple[int, UUID, int]]:
        with read_connection(self.app.engine) as conn:
            return [tuple(row) for row in conn.execute(self._statements.tail,
                                                       {"seen": self._seen})]

    def _fast_forward(self, positions: list[int]) -> None:
        with read_connection(self.app.engine) as conn:
            rows = conn.execute(self._statements.events_at, {"ids": positions}).all()
        for originator_id, version, topic, state in rows:
            held = self.held.get(originator_id)
            if held is None:
                continue
            if held.version + 1 != version:  # a gap (never expected): read it afresh
                self.held.drop([originator_id])
                continue
            stored = StoredEvent(originator_id=originator_id, originator_version=version,
                                 topic=topic, state=bytes(state))
            self.app.mapper.to_domain_event(stored).mutate(held)


def _touched(decision: Decision) -> set[UUID]:
    return decision.loaded | decision.saved.keys()


def _key(decision: Decision) -> tuple[str, str | None]:
    return decision.ask.context.actor, decision.ask.context.idempotency_key


class _Statements:
    """The writer's queries, built once (building one costs more CPU than running it)."""

    def __init__(self, app: Any) -> None:
        events = app.recorder.events_record_cls.__table__
        snapshots = app.snapshots.recorder.events_record_cls.__table__
        self.tail = (select(events.c.id, events.c.originator_id, events.c.originator_version)
                     .where(events.c.id > bindparam("seen")).order_by(events.c.id))
        self.events_at = (select(events.c.originator_id, events.c.originator_version,
                                 events.c.topic, events.c.state)
                          .where(events.c.id.in_(bindparam("ids", expanding=True)))
                          .order_by(events.c.id))
        aggregate_id = bindparam("id", type_=events.c.originator_id.type)
        latest = (select(literal(0).label("kind"), snapshots.c.originator_version,
                         snapshots.c.topic, snapshots.c.state)
                  .where(snapshots.c.originator_id == aggregate_id)
                  .order_by(snapshots.c.originator_version.desc()).limit(1).subquery())
        since = select(func.max(snapshots.c.originator_version)).where(
            snapshots.c.originator_id == aggregate_id).scalar_subquery()
        after = (select(literal(1).label("kind"), events.c.originator_version,
                        events.c.topic, events.c.state)
                 .where(events.c.originator_id == aggregate_id,
                        events.c.originator_version > func.coalesce(since, 0)))
        both = union_all(select(latest), after).subquery()
        self.exists = (select(events.c.originator_version)
                       .where(events.c.originator_id == aggregate_id).limit(1))
        self.load = (select(both.c.originator_version, both.c.topic, both.c.state)
                     .order_by(both.c.kind, both.c.originator_version))
