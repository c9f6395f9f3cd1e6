"""Point-in-time balances over a long ledger: how long an as-of query takes.

    python -m benchmarks.audit_asof [--database-url URL] [--events 20000]
                                    [--distributors 1000] [--queries 40]

Seeds `--events` journal entries (1,000,000 for the figure the audit issue sets a target
for: an as-of balance in at most 100 ms), written straight into the event store in big
batches through the application's mapper (so encrypted if FENXIAO_CIPHER_KEY is set): the
payments, accruals, maturities, withdrawals and reversals of `--distributors` distributors,
one application-clock second apart. Then builds the balance checkpoints (the
audit_checkpoints projection) and times as-of queries at random past positions and times:
the trial balance, one merchant account, one distributor account. Prints JSON lines like
`python -m benchmarks`: the seeding and checkpoint rates, and the p50 and max latency of
each query in ms. It WIPES the target database (same guard as `python -m benchmarks`).
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from benchmarks.__main__ import Report, note, prepare
from commands import Fenxiao, audit
from commands.settings import Settings
from domain import ledger
from domain.ledger import JournalEntry
from projections.audit_checkpoints import AuditCheckpointsProjection, event_log
from projections.runner import ProjectionRunner

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
CHUNK = 5_000  # events per insert transaction


def entry_lines(rng: random.Random, n: int, distributors: int
                ) -> tuple[str, list[dict[str, Any]]]:
    """The kind and lines of the n-th entry: mostly payments and accruals, then the
    commission's later life (maturity, withdrawal, payout, reversal)."""
    d = f"BD{rng.randrange(distributors):05d}"
    amount = rng.randint(100, 20_000)
    kind, lines = rng.choices([
        ("payment", lambda: ledger.payment_lines(amount * 10)),
        ("accrual", lambda: ledger.accrual_lines(d, amount)),
        ("maturity", lambda: ledger.maturity_lines(d, amount)),
        ("withdrawal_requested", lambda: ledger.withdrawal_request_lines(d, amount)),
        ("withdrawal_paid", lambda: ledger.withdrawal_paid_lines(d, amount)),
        ("reversal", lambda: ledger.reverse_pending_lines(d, amount)),
        ("refund", lambda: ledger.refund_lines(amount)),
    ], weights=[30, 30, 20, 6, 6, 5, 3])[0]
    return kind, lines()


def seed(app: Fenxiao, events: int, distributors: int) -> float:
    """Write `events` journal entries; return entries per second."""
    rng = random.Random(20261125)
    started = time.perf_counter()
    for first in range(0, events, CHUNK):
        rows = []
        for n in range(first, min(first + CHUNK, events)):
            kind, lines = entry_lines(rng, n, distributors)
            at = START + timedelta(seconds=n)
            (posted,) = JournalEntry.post(f"bench:{n}", kind, app.settings.currency, lines,
                                          f"bench entry {n}", at).collect_events()
            posted.__dict__["meta"] = {"actor": "bench", "command_id": f"bench-{n}", "at": at}
            stored = app.mapper.to_stored_event(posted)
            rows.append({"originator_id": stored.originator_id,
                         "originator_version": stored.originator_version,
                         "topic": stored.topic, "state": stored.state})
        with app.engine.begin() as conn:
            conn.execute(event_log.insert(), rows)
        if first and first % 100_000 == 0:
            note(f"  {first:,} entries written")
    return events / (time.perf_counter() - started)


def timed(query: Callable[[], Any], times: int) -> list[float]:
    latencies = []
    for _ in range(times):
        started = time.perf_counter()
        query()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def measure(app: Fenxiao, events: int, distributors: int, queries: int,
            report: Report) -> None:
    rng = random.Random(7)
    positions = [rng.randint(1, events) for _ in range(queries)]
    times = [START + timedelta(seconds=rng.randint(0, events - 1), milliseconds=500)
             for _ in range(queries)]
    account = f"distributor:BD{rng.randrange(distributors):05d}:available"
    cases = {
        "trial_balance": lambda as_of: audit.trial_balance(app, as_of),
        "account_balance_merchant": lambda as_of: audit.account_balance(
            app, ledger.CASH, as_of),
        "account_balance_distributor": lambda as_of: audit.account_balance(
            app, account, as_of),
    }
    for name, query in cases.items():
        for by, points in (("position", positions), ("time", times)):
            pending = iter(points)
            query(points[0])  # warm up: connections, the first decodes
            latencies = timed(lambda: query(next(pending)), len(points))
            report.emit(f"audit_asof_{name}_by_{by}_p50", statistics.median(latencies), "ms")
            report.emit(f"audit_asof_{name}_by_{by}_max", max(latencies), "ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit_asof",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh temporary SQLite file")
    parser.add_argument("--events", type=int, default=20_000,
                        help="journal entries in the log (default 20000; 1000000 for the "
                             "issue's target)")
    parser.add_argument("--distributors", type=int, default=1_000,
                        help="distributors the entries are spread over (default 1000)")
    parser.add_argument("--queries", type=int, default=40,
                        help="queries timed per kind (default 40)")
    parser.add_argument("--yes-wipe", action="store_true")
    args = parser.parse_args(argv)
    if min(args.events, args.distributors, args.queries) < 1:
        parser.error("--events, --distributors and --queries must be positive")
    scratch = tempfile.TemporaryDirectory(prefix="fenxiao-bench-")
    url = args.database_url or f"sqlite:///{Path(scratch.name) / 'bench.db'}"
    report = Report()
    try:
        prepare(url, args.yes_wipe, fresh=args.database_url is None)
        app = Fenxiao(Settings(database_url=url))
        try:
            note(f"seeding {args.events:,} journal entries over {args.distributors:,} "
                 "distributors")
            report.emit("audit_seed_entries", seed(app, args.events, args.distributors),
                        "events/s")
            note("building the balance checkpoints")
            started = time.perf_counter()
            ProjectionRunner(app, [AuditCheckpointsProjection()]).catch_up()
            report.emit("audit_checkpoints_catch_up",
                        args.events / (time.perf_counter() - started), "events/s")
            measure(app, args.events, args.distributors, args.queries, report)
        finally:
            app.close()
    finally:
        scratch.cleanup()


if __name__ == "__main__":
    main()
