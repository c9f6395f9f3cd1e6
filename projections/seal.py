"""Tamper evidence for the event log: an HMAC-SHA-256 chain over every stored event, sealed
in blocks (DESIGN.md "Audit"), and its verification.

Why a keyed MAC and not a bare hash: whoever can edit rows of the database could recompute
a SHA-256 chain after editing it. HMAC needs FENXIAO_SEAL_KEY, which is kept outside the
database, so a chain recomputed without it (a forged chain) does not verify.

The chain. The sealer follows the log in position order, as a projection does, and writes
one link per event row, computed over the row exactly as stored (position, the originator
id's 16 bytes, version, topic, state bytes, which stay encrypted if the store is):

    mac = HMAC(key, previous mac || "E" || position, previous position, version,
               originator id length, topic length, originator id, topic, state)

Each link also stores the position it chained from. A position no link ever named was never
used (PostgreSQL leaves such gaps when a transaction that took a position rolls back: not
tampering); a position that was linked and has no event now was deleted; an event with no
link below the sealed head was inserted; an event whose MAC no longer matches was altered.

Blocks. Every batch ends with a seal: its number, the position it starts after, its last
position, its count, the SHA-256 of its links' MACs, the previous seal's MAC, and its own
MAC. Seals are checked first; an attacker who rewrote the links and seals with another key
is caught at the first seal that does not verify.

Exactly once. A batch (its links, its seal, the compare-and-set of the sealer's tracking
position) is one transaction: a crash leaves either all of it or none, and a second sealer
that read the same position fails its compare-and-set (or waits on the tracking row lock).

Positions that may still commit. The sealer reads, like the projection runner, only rows
that are committed, and relies on the same guarantee the runner does: the event recorder
takes `LOCK TABLE ... IN EXCLUSIVE MODE` before it allocates positions (PostgreSQL; SQLite
has one writer at a time), so positions commit in order and once the sealer sees position
p, every lower position is committed or rolled back for good. It never links past what it
saw.

The key. FENXIAO_SEAL_KEY unset: sealing is disabled, and `audit verify` reports
"sealing_disabled" (not ok, exit status 2) rather than a reassuring "ok": a default key
would be known to everyone, and a chain anyone can recompute proves nothing. A key shorter
than 16 characters is refused the same way. The sealer never extends a chain whose last
seal does not verify with its key (a changed key, or tampering): it stops and says so.

What the chain alone cannot prove: that nothing was cut off its end (the last events
together with their links and seals). `head_seal`, the last seal's MAC, is in every report:
an auditor who notes it down outside the database closes that gap.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import logging
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Sequence

from sqlalchemy import (Column, DateTime, Integer, LargeBinary, Table, UniqueConstraint,
                        and_, bindparam, cast, func, select)
from sqlalchemy.engine import Connection

from commands.app import CoreApp
from commands.settings import Settings
from commands.storage import BIGINT, metadata, tracking
from projections.parking import begin_for_savepoints
from projections.runner import AdvisoryLocks, advance_tracking, lock_position

log = logging.getLogger("fenxiao.seal")

SEALER = "seal"  # its row in fenxiao_tracking: the last sealed position
SEAL_LOCK = "event log seal"  # the advisory lock one worker holds to seal (PostgreSQL)
MAX_BLOCK = 5000  # a block is what one batch seals: at most this many events
MIN_KEY_CHARS = 16
VERIFY_CHUNK = 5000  # positions read per round trip while verifying (a sort in work_mem)
GENESIS = bytes(32)  # the "previous MAC" of the first link and of the first seal

# Problems a report can name. The first four are tampering, the last two mean "cannot tell".
ALTERED, INSERTED, DELETED, FORGED_SEAL = "altered", "inserted", "deleted", "forged_seal"
SEALING_DISABLED, SEAL_KEY_INVALID = "sealing_disabled", "seal_key_invalid"
PROBLEMS = (ALTERED, INSERTED, DELETED, FORGED_SEAL, SEALING_DISABLED, SEAL_KEY_INVALID)

seal_links = Table(
    "fenxiao_seal_links", metadata,
    Column("position", BIGINT, primary_key=True, autoincrement=False),
    Column("prev_position", BIGINT, nullable=False),
    Column("mac", LargeBinary, nullable=False),
)

seals = Table(
    "fenxiao_seals", metadata,
    Column("block", BIGINT, primary_key=True, autoincrement=False),
    Column("after_position", BIGINT, nullable=False),
    Column("last_position", BIGINT, nullable=False),
    Column("count", Integer, nullable=False),
    Column("block_hash", LargeBinary, nullable=False),
    Column("prev_seal", LargeBinary, nullable=False),
    Column("mac", LargeBinary, nullable=False),
    Column("sealed_at", DateTime(timezone=True), nullable=False),
    # The compare-and-set on the last sealed position, in the schema: two seals can never
    # start from the same position.
    UniqueConstraint("after_position", name="uq_fenxiao_seals_after_position"),
)

_LINK = struct.Struct(">QQqII")  # position, previous position, version, id length, topic length
_SEAL = struct.Struct(">QQQQq")  # block, after, last, count, sealed at (µs since epoch)


class SealKeyError(Exception):
    """FENXIAO_SEAL_KEY is set but too short to be a secret."""


class SealStateError(Exception):
    """The seal tables cannot be extended: the last seal does not verify with this key, or
    the sealer's position and the seals disagree. Sealing stops; `audit verify` says why."""


def seal_key(settings: Settings) -> bytes | None:
    """The key as bytes; None when sealing is disabled (FENXIAO_SEAL_KEY unset)."""
    if not settings.seal_key:
        return None
    key = settings.seal_key.encode()
    if len(key) < MIN_KEY_CHARS:
        raise SealKeyError(f"FENXIAO_SEAL_KEY must be at least {MIN_KEY_CHARS} characters "
                           "(e.g. the output of `python -c 'import secrets; "
                           "print(secrets.token_hex(32))'`)")
    return key


def link_mac(key: bytes, prev_mac: bytes, position: int, prev_position: int,
             originator_id: bytes, version: int, topic: bytes, state: bytes) -> bytes:
    return hmac.digest(key, b"".join((
        prev_mac, b"E", _LINK.pack(position, prev_position, version, len(originator_id),
                                   len(topic)),
        originator_id, topic, state)), "sha256")


def seal_mac(key: bytes, block: int, after: int, last: int, count: int, sealed_at: datetime,
             block_hash: bytes, prev_seal: bytes) -> bytes:
    return hmac.digest(key, b"".join((
        b"S", _SEAL.pack(block, after, last, count, _micros(sealed_at)),
        bytes(block_hash), bytes(prev_seal))), "sha256")


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch; SQLite gives the stored UTC time back without zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // _MICROSECOND


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1) - datetime(1970, 1, 1)


def _events(app: CoreApp) -> Table:
    return app.recorder.events_record_cls.__table__  # type: ignore[attr-defined]


def _stored_columns(conn: Connection, events: Table) -> tuple[Any, ...]:
    """The event row as stored (position, originator id, version, topic, state), every
    field but the numbers as bytes: the originator id's 16 bytes (PostgreSQL's uuid
    storage, SQLite's BINARY(16)), the topic's UTF-8, the state. On SQLite a column holds
    whatever was written to it (an edit may leave text in a blob column): CAST reads its
    bytes whatever they are."""
    if conn.dialect.name == "postgresql":
        return (events.c.id, func.uuid_send(events.c.originator_id, type_=LargeBinary),
                events.c.originator_version,
                func.convert_to(events.c.topic, "UTF8", type_=LargeBinary), events.c.state)
    return (events.c.id, cast(events.c.originator_id, LargeBinary),
            events.c.originator_version, cast(events.c.topic, LargeBinary),
            cast(events.c.state, LargeBinary))


# -- sealing ------------------------------------------------------------------------


def seal_pending(app: CoreApp, block_size: int = MAX_BLOCK, max_blocks: int | None = None
                 ) -> int:
    """Seal the committed events not sealed yet (all, or at most `max_blocks` blocks), a
    block per transaction; return how many. Does nothing when sealing is disabled."""
    key = seal_key(app.settings)
    if key is None:
        return 0
    sealed = 0
    for _ in itertools.count() if max_blocks is None else range(max_blocks):
        if not (n := seal_block(app, key, block_size)):
            break
        sealed += n
    return sealed


def seal_block(app: CoreApp, key: bytes, block_size: int = MAX_BLOCK) -> int:
    """Link the next events (at most `block_size`) and seal them, in one transaction."""
    events = _events(app)
    with app.engine.connect() as conn:  # a cheap look first: on SQLite the batch below
        start = conn.execute(_position_query()).scalar() or 0  # takes the write lock
        if not conn.execute(select(events.c.id).where(events.c.id > start).limit(1)).first():
            return 0
    with app.datastore.transaction(commit=True) as session:
        conn = session.connection()
        begin_for_savepoints(conn)  # SQLite: BEGIN IMMEDIATE, one sealer at a time
        start = lock_position(conn, SEALER)  # SQLite: BEGIN IMMEDIATE locked it
        last = conn.execute(select(seals).order_by(seals.c.block.desc()).limit(1)).first()
        prev_mac = _chain_head(conn, key, start, last)
        rows = conn.execute(select(*_stored_columns(conn, events)).where(events.c.id > start)
                            .order_by(events.c.id).limit(block_size)).all()
        if not rows:
            return 0
        links, block_hash, prev_position = [], hashlib.sha256(), start
        for position, originator, version, topic, state in rows:
            prev_mac = link_mac(key, prev_mac, position, prev_position, originator, version,
                                topic, state)
            links.append({"position": position, "prev_position": prev_position,
                          "mac": prev_mac})
            block_hash.update(prev_mac)
            prev_position = position
        conn.execute(seal_links.insert(), links)
        block = last.block + 1 if last else 1
        prev_seal = bytes(last.mac) if last else GENESIS
        sealed_at = app.clock().astimezone(timezone.utc)
        digest = block_hash.digest()
        conn.execute(seals.insert().values(
            block=block, after_position=start, last_position=prev_position, count=len(links),
            block_hash=digest, prev_seal=prev_seal, sealed_at=sealed_at,
            mac=seal_mac(key, block, start, prev_position, len(links), sealed_at, digest,
                         prev_seal)))
        advance_tracking(conn, SEALER, start, prev_position)
        return len(links)


def _position_query() -> Any:
    return select(tracking.c.position).where(tracking.c.name == SEALER)


def _chain_head(conn: Connection, key: bytes, start: int, last: Any) -> bytes:
    """The MAC to chain the next link from, after checking that the chain may be extended:
    the last seal verifies with this key and ends where the sealer's position says."""
    if last is None:
        if start != 0:
            raise SealStateError(f"the sealer's position is {start} but there are no seals")
        return GENESIS
    if last.last_position != start:
        raise SealStateError(f"the last seal ends at position {last.last_position} but the "
                             f"sealer's position is {start}")
    if not hmac.compare_digest(bytes(last.mac), seal_mac(
            key, last.block, last.after_position, last.last_position, last.count,
            last.sealed_at, last.block_hash, last.prev_seal)):
        raise SealStateError(f"seal {last.block} does not verify with FENXIAO_SEAL_KEY: "
                             "either the key changed or the seals were tampered with; "
                             "run `fenxiao audit verify`")
    mac = conn.execute(select(seal_links.c.mac).where(seal_links.c.position == start)).scalar()
    if mac is None:
        raise SealStateError(f"the link of the last sealed position {start} is missing; "
                             "run `fenxiao audit verify`")
    return bytes(mac)


WORKER_BLOCKS = 10  # per round of the worker, so a long backlog does not hold up projections
COMPLAINT_INTERVAL_S = 300.0
_complaints: dict[str, float] = {}  # message -> when it was last logged


def seal_in_worker(app: CoreApp, locks: AdvisoryLocks | None) -> int:
    """What the worker runs after each round of projections: seal what is pending, up to
    WORKER_BLOCKS blocks (on PostgreSQL only in the worker holding the seal lock). Never
    raises: a sealing problem must not stop the projections; it is logged (once per 5
    minutes per message) and reported by `audit verify`."""
    try:
        if not app.settings.seal_key:
            return 0
        if locks is not None and not locks.held([SEAL_LOCK]):
            return 0
        return seal_pending(app, max_blocks=WORKER_BLOCKS)
    except Exception as error:
        message = f"{type(error).__name__}: {error}"
        now = time.monotonic()
        if now - _complaints.get(message, -COMPLAINT_INTERVAL_S) >= COMPLAINT_INTERVAL_S:
            _complaints[message] = now
            log.error("sealing the event log failed: %s", message)
        return 0


# -- verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    position: int
    problem: str
    detail: str


def verify(app: CoreApp, chunk: int = VERIFY_CHUNK) -> dict[str, Any]:
    """Recompute the chain over the whole log from one snapshot and report: `ok` (nothing
    altered, inserted or deleted up to `sealed_through`, and every seal verifies), the
    first bad position and its problem, gaps (positions never used), and how many events
    the sealer has not reached yet (`unsealed`)."""
    started = time.perf_counter()
    report: dict[str, Any] = {
        "ok": False, "events": 0, "head": 0, "sealed_through": 0, "seals": 0, "unsealed": 0,
        "gaps": 0, "first_bad_position": None, "problem": None, "detail": None,
        "head_seal": None}
    try:
        key = seal_key(app.settings)
    except SealKeyError as error:
        key, report["problem"], report["detail"] = None, SEAL_KEY_INVALID, str(error)
    else:
        if key is None:
            report["problem"] = SEALING_DISABLED
            report["detail"] = ("FENXIAO_SEAL_KEY is not set: the log is not sealed and "
                                "cannot be verified")
    events = _events(app)
    with _snapshot(app) as conn:
        report["head"], report["events"] = conn.execute(
            select(func.coalesce(func.max(events.c.id), 0), func.count())).one()
        if key is not None:
            _verify_chain(conn, events, key, chunk, report)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _verify_chain(conn: Connection, events: Table, key: bytes, chunk: int,
                  report: dict[str, Any]) -> None:
    good, finding = _check_seals(key, conn.execute(
        select(seals).order_by(seals.c.block)).all())
    sealed_through = good[-1].last_position if good else 0
    gaps, earlier = _walk(conn, events, key, good, sealed_through, chunk)
    finding = earlier or finding or _links_past(conn, sealed_through)
    report.update(
        sealed_through=sealed_through, seals=len(good), gaps=gaps,
        head_seal=bytes(good[-1].mac).hex() if good else None,
        unsealed=conn.execute(select(func.count()).where(events.c.id > sealed_through)
                              ).scalar())
    if finding is None:
        report["ok"] = True
    else:
        report.update(first_bad_position=finding.position, problem=finding.problem,
                      detail=finding.detail)


@contextmanager
def _snapshot(app: CoreApp) -> Iterator[Connection]:
    """One consistent read of events, links and seals (a sealer may commit meanwhile)."""
    with app.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ",
                                   postgresql_readonly=True)
        with conn.begin():
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")  # pysqlite would not open one for reads
            yield conn


def _check_seals(key: bytes, rows: Sequence[Any]) -> tuple[list[Any], Finding | None]:
    """The seals that verify, in order, up to the first that does not (and what is wrong
    with that one)."""
    good: list[Any] = []
    prev_mac, prev_last = GENESIS, 0
    for seal in rows:
        expected = seal_mac(key, seal.block, seal.after_position, seal.last_position,
                            seal.count, seal.sealed_at, seal.block_hash, seal.prev_seal)
        why = None
        if not hmac.compare_digest(bytes(seal.mac), expected):
            why = "does not verify with FENXIAO_SEAL_KEY (made without the key, or with " \
                  "another one)"
        elif seal.block != len(good) + 1:
            why = f"follows seal {len(good)}: a seal between them is missing"
        elif bytes(seal.prev_seal) != prev_mac or seal.after_position != prev_last:
            why = "does not follow the seal before it"
        elif not (seal.last_position > seal.after_position and seal.count >= 1):
            why = "covers no positions"
        if why:
            return good, Finding(prev_last + 1, FORGED_SEAL, f"seal {seal.block} {why}")
        good.append(seal)
        prev_mac, prev_last = bytes(seal.mac), seal.last_position
    return good, None


def _walk(conn: Connection, events: Table, key: bytes, good: Sequence[Any],
          sealed_through: int, chunk: int) -> tuple[int, Finding | None]:
    """Recompute every link up to `sealed_through`; return the gaps met and the first
    problem."""
    if not good:
        return 0, None
    rows = _chain_rows(conn, events, sealed_through, chunk)
    try:
        gaps, found = _merge(key, good, sealed_through, rows)
    finally:
        rows.close()
    if found is None or isinstance(found, Finding):
        return gaps, found
    return gaps, _diagnose(conn, sealed_through, *found)


def _merge(key: bytes, good: Sequence[Any], sealed_through: int, rows: Iterator[Any]
           ) -> tuple[int, Finding | tuple[int, int | None]]:
    """The loop that runs once per event, kept tight: the gaps met, and the first problem
    (or, to diagnose, the last good position and the position where the chain breaks:
    an event without a valid link, or None past the end)."""
    # A keyed HMAC copied per event: OpenSSL 3 sets a one-shot HMAC up from scratch on
    # every call, which costs more than the copy (measured: 3.0 against 4.1 µs an event).
    keyed, pack, sha256, join = hmac.new(key, digestmod=hashlib.sha256), _LINK.pack, \
        hashlib.sha256, b"".join
    blocks = iter(good)
    seal = next(blocks)
    block_end, block_hash, count = seal.last_position, sha256(), 0
    gaps, prev_position, prev_mac = 0, 0, GENESIS
    position = None
    try:
        for position, linked_from, version, originator, mac, topic, state in rows:
            if linked_from != prev_position:
                return gaps, (prev_position, position)
            computed = keyed.copy()
            computed.update(join((prev_mac, b"E", pack(position, linked_from, version,
                                                       len(originator), len(topic)),
                                  originator, topic, state)))
            if computed.digest() != mac:
                return gaps, (prev_position, position)
            gaps += position - prev_position - 1
            block_hash.update(mac)
            count += 1
            if position >= block_end:
                if (position != block_end or count != seal.count
                        or block_hash.digest() != bytes(seal.block_hash)):
                    return gaps, Finding(seal.after_position + 1, FORGED_SEAL,
                                         f"the links of seal {seal.block} are not the ones "
                                         "it sealed")
                seal = next(blocks, seal)
                block_end, block_hash, count = seal.last_position, sha256(), 0
            prev_position, prev_mac = position, mac
    except (struct.error, TypeError):  # a value of another type: SQLite stores any
        return gaps, (prev_position, position)
    if prev_position != sealed_through:
        return gaps, (prev_position, None)
    return gaps, None


def _chain_rows(conn: Connection, events: Table, through: int, chunk: int
                ) -> Iterator[tuple[Any, ...]]:
    """Every event up to `through` with its link, in position order, as (position, linked
    from, version, originator id, mac, topic, state), the link's fields None where there
    is none: one merge join in the database, read past SQLAlchemy's row handling. On
    PostgreSQL, binary COPY (psycopg2 decodes a bytea column's hex text at a fraction of
    the speed), a range of `chunk` positions at a time (small enough for the database to
    sort it in memory)."""
    position, originator, version, topic, state = _stored_columns(conn, events)
    columns = (position, seal_links.c.prev_position, version, originator, seal_links.c.mac,
               topic, state)
    cursor = conn.connection.driver_connection.cursor()
    try:
        if conn.dialect.name != "postgresql":
            compiled = (select(*columns)
                        .outerjoin_from(events, seal_links,
                                        seal_links.c.position == events.c.id)
                        .where(events.c.id <= through).order_by(events.c.id)
                        .compile(dialect=conn.dialect))
            cursor.execute(compiled.string, [compiled.params[name]
                                             for name in compiled.positiontup or ()])
            while rows := cursor.fetchmany(chunk):
                yield from rows
            return
        # Two index ranges merged in order, whatever the statistics say (stale ones after
        # a bulk load made the planner hash the whole links table, or sort on disk, for
        # every chunk): a range on both sides, and no bitmap scans or sorts (SET LOCAL:
        # for this read-only transaction only).
        cursor.execute("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off")
        lo, hi = bindparam("lo"), bindparam("hi")
        compiled = (select(*columns)
                    .outerjoin_from(events, seal_links, and_(
                        seal_links.c.position == events.c.id, seal_links.c.position > lo,
                        seal_links.c.position <= hi))
                    .where(events.c.id > lo, events.c.id <= hi).order_by(events.c.id)
                    .compile(dialect=conn.dialect))
        for lo in range(0, through, chunk):
            sql = cursor.mogrify(compiled.string, {**compiled.params, "lo": lo,
                                                   "hi": min(lo + chunk, through)})
            buffer = io.BytesIO()
            cursor.copy_expert(b"COPY (" + sql + b") TO STDOUT WITH (FORMAT binary)", buffer)
            yield from _copy_tuples(buffer.getbuffer())
    finally:
        cursor.close()


# PostgreSQL's binary COPY: a 19-byte header, then per row the field count and each field
# as its length (-1: NULL) and bytes, then -1. A row of _chain_rows whose link is there
# starts with fields of known sizes, read at once; any other row field by field.
_COPY_HEADER = 19
_FIXED = struct.Struct(">hiqiqiqi16si32si")
_FIXED_SIZES = (7, 8, 8, 8, 16, 32)
_INT16, _INT32, _INT64 = struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")


def _copy_tuples(data: memoryview) -> Iterator[tuple[Any, ...]]:
    fixed, int32 = _FIXED.unpack_from, _INT32.unpack_from
    at, end = _COPY_HEADER, len(data) - 2
    while at < end:
        (fields, n0, position, n1, linked_from, n2, version, n3, originator, n4, mac,
         topic_size) = fixed(data, at)
        if (fields, n0, n1, n2, n3, n4) != _FIXED_SIZES:
            row, at = _copy_tuple(data, at)
            yield row
            continue
        at += _FIXED.size
        topic = data[at:at + topic_size]
        at += topic_size
        (state_size,) = int32(data, at)
        at += 4
        yield (position, linked_from, version, originator, mac, topic,
               data[at:at + state_size])
        at += state_size


def _copy_tuple(data: memoryview, at: int) -> tuple[tuple[Any, ...], int]:
    """One row read field by field; the numbers are the first three fields."""
    (fields,) = _INT16.unpack_from(data, at)
    at += 2
    row: list[Any] = []
    for index in range(fields):
        (size,) = _INT32.unpack_from(data, at)
        at += 4
        if size < 0:
            row.append(None)
            continue
        value = data[at:at + size]
        row.append(_INT64.unpack(value)[0] if index < 3 else bytes(value))
        at += size
    return tuple(row), at


def _diagnose(conn: Connection, sealed_through: int, good_through: int,
              breaks_at: int | None) -> Finding:
    """Name what broke the chain after position `good_through` (the last event linked
    right). No event stands between it and `breaks_at` (the next event, linked wrong or
    not at all; None: the sealed events ended early), so any position in between that a
    link or a seal names was a sealed event and is deleted: the first such. Else the
    event at `breaks_at` is altered if the chain goes through its position (a later link
    or a seal names it), inserted if the chain never did."""
    upper = breaks_at if breaks_at is not None else sealed_through + 1
    named = [conn.execute(select(func.min(column)).where(column > good_through,
                                                         column < upper)).scalar()
             for column in (seal_links.c.position, seal_links.c.prev_position,
                            seals.c.after_position, seals.c.last_position)]
    deleted = min((p for p in named if p is not None), default=None)
    if deleted is not None or breaks_at is None:  # (the last seal names sealed_through)
        return Finding(deleted or sealed_through, DELETED,
                       "the event was sealed and is missing")
    in_chain = conn.execute(select(seal_links.c.position).where(
        seal_links.c.prev_position == breaks_at).limit(1)).first() or conn.execute(
        select(seals.c.block).where(seals.c.last_position == breaks_at).limit(1)).first()
    if in_chain:
        return Finding(breaks_at, ALTERED,
                       "the event (or its link) is not what was sealed at this position")
    return Finding(breaks_at, INSERTED, "the chain never linked an event at this position")


def _links_past(conn: Connection, sealed_through: int) -> Finding | None:
    """Links beyond the last seal: the sealer writes none without its seal, so a seal was
    removed."""
    beyond = conn.execute(select(func.min(seal_links.c.position))
                          .where(seal_links.c.position > sealed_through)).scalar()
    if beyond is None:
        return None
    return Finding(beyond, FORGED_SEAL,
                   "links run past the last seal: a seal covering them was removed")


def exit_status(report: dict[str, Any]) -> int:
    """0: intact; 1: tampering found; 2: cannot be checked (no usable key)."""
    if report["ok"]:
        return 0
    return 2 if report["problem"] in (SEALING_DISABLED, SEAL_KEY_INVALID) else 1
