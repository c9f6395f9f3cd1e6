"""Sealing and verifying the event log's HMAC chain (projections/seal.py), in events per second.

    python -m benchmarks.audit_verify [--database-url URL] [--events 100000]
    python -m benchmarks.audit_verify --events 1000000 \\
        --database-url postgresql+psycopg2://postgres@127.0.0.1:5432/fenxiao_bench

Seeds N events cheaply (rows written straight into the events table, shaped like ours:
aggregates of ten versions, real topics, states of 200 to 1,000 bytes), seals them all
(`audit_seal`), then verifies the whole chain (`audit_verify`, target >= 100,000 events/s),
beside a raw driver-level scan of the same rows in the same run (`raw_event_scan`): the
ratio says what the HMAC chain costs over just reading the log. Prints JSON lines like
`python -m benchmarks`. It WIPES the target database (same guard).
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.engine import make_url

from benchmarks.__main__ import Report, note, prepare
from benchmarks.raw import raw_log_read

TOPICS = ("domain.orders:Order.OrderPlaced", "domain.orders:Order.OrderPaid",
          "domain.stock:StockItem.StockReserved", "domain.fulfilment:Shipment.Dispatched",
          "domain.ledger:Wallet.CommissionAccrued", "domain.aftersales:Case.RefundIssued",
          "domain.ledger:Wallet.WithdrawalRequested")
SEED_CHUNK = 10_000
KEY = "benchmark-seal-key-" + "0" * 24


def seed(app, events: int) -> None:
    """`events` rows in the events table, in chunks of one transaction each."""
    table = app.recorder.events_record_cls.__table__
    rng = random.Random(7)
    pool = os.urandom(4096)
    aggregate, version = uuid.uuid4(), 0
    with app.engine.connect() as conn:
        for start in range(0, events, SEED_CHUNK):
            rows = []
            for _ in range(min(SEED_CHUNK, events - start)):
                if version == 10:
                    aggregate, version = uuid.uuid4(), 0
                version += 1
                size = rng.randrange(200, 1000)
                offset = rng.randrange(0, len(pool) - size)
                rows.append({"originator_id": aggregate, "originator_version": version,
                             "topic": rng.choice(TOPICS), "state": pool[offset:offset + size]})
            conn.execute(insert(table), rows)
            conn.commit()
        conn.exec_driver_sql(f"ANALYZE {table.name}")  # as autovacuum would, in time
        conn.commit()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit_verify",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url",
                        help="SQLAlchemy URL (default: a fresh temporary SQLite file)")
    parser.add_argument("--events", type=int, default=100_000,
                        help="events to seed, seal and verify (default 100000)")
    parser.add_argument("--yes-wipe", action="store_true",
                        help="wipe the database even if its name has no 'bench' or 'test'")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be positive")
    scratch = tempfile.TemporaryDirectory(prefix="fenxiao-bench-")
    url = args.database_url or f"sqlite:///{Path(scratch.name) / 'bench.db'}"
    try:
        prepare(url, args.yes_wipe, fresh=args.database_url is None)
        run(url, args.events, Report())
    finally:
        scratch.cleanup()


def run(url: str, events: int, report: Report) -> None:
    from commands import Fenxiao
    from commands.settings import Settings
    from projections.seal import seal_pending, verify

    backend = make_url(url).get_backend_name()
    app = Fenxiao(Settings(database_url=url, seal_key=KEY, rate_limit=None))
    try:
        note(f"[{backend}] seeding {events} events")
        started = time.perf_counter()
        seed(app, events)
        note(f"  {time.perf_counter() - started:.1f} s")

        report.emit("raw_event_scan", raw_log_read(url)[1], "rows/s")

        started = time.perf_counter()
        sealed = seal_pending(app)
        seconds = time.perf_counter() - started
        assert sealed == events, (sealed, events)
        note(f"[{backend}] sealed {sealed} events in {seconds:.1f} s")
        report.emit("audit_seal", sealed / seconds, "events/s")

        started = time.perf_counter()
        result = verify(app)
        seconds = time.perf_counter() - started
        if not result["ok"] or result["sealed_through"] != result["head"]:
            raise SystemExit(f"verify did not find the seeded log intact: {result}")
        note(f"[{backend}] verified {result['events']} events in {seconds:.2f} s")
        report.emit("audit_verify", result["events"] / seconds, "events/s", "raw_event_scan")
    finally:
        app.close()


if __name__ == "__main__":
    main()
