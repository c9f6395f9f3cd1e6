"""Measure Fenxiao against raw database baselines, in one run against one database.

Prints one JSON object per line on stdout:
  {"metric", "value", "unit", "baseline_metric", "ratio"}
where ratio = value / the baseline's value, both measured in this run against the same
database (no baseline fields where there is none). Progress and notes go to stderr.

It WIPES the target database: every Fenxiao table is emptied first (a database whose name
contains neither "bench" nor "test" is refused unless --yes-wipe is given).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from benchmarks import raw, workloads
from commands import Fenxiao
from commands.settings import Settings


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Report:
    """Prints the metric lines; a ratio is computed from the printed (rounded) values, so
    anyone can recompute it from the output."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def emit(self, metric: str, value: float, unit: str, baseline: str | None = None) -> None:
        row: dict[str, Any] = {"metric": metric, "value": round(value, 3), "unit": unit}
        if baseline is not None:
            row["baseline_metric"] = baseline
            row["ratio"] = round(row["value"] / self.values[baseline], 3)
        self.values[metric] = row["value"]
        print(json.dumps(row), flush=True)


def project_tables() -> set[str]:
    from migrations import target_metadata

    return {name for metadata in target_metadata() for name in metadata.tables}


def prepare(url: str, wipe_ok: bool, fresh: bool) -> None:
    """Migrate the database and empty every table of the project."""
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and (not parsed.database or parsed.database == ":memory:"
                   or "mode=memory" in url):
        raise SystemExit("an in-memory SQLite database cannot be shared with the raw "
                         "driver baseline; give a file URL")
    if not fresh:
        name = Path(parsed.database).name if sqlite else (parsed.database or "")
        if not wipe_ok and "bench" not in name and "test" not in name:
            raise SystemExit(f"refusing to wipe database {name!r}: its name contains "
                             "neither 'bench' nor 'test' (pass --yes-wipe to insist)")
        note(f"WIPING every Fenxiao table in {parsed.render_as_string(hide_password=True)}")
    else:
        note(f"database: a fresh temporary SQLite file ({parsed.database})")
    from migrations import upgrade

    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            tables = sorted(project_tables() & set(inspect(conn).get_table_names()))
            if conn.dialect.name == "postgresql":
                conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                                  + " RESTART IDENTITY"))
            else:
                for table in tables:
                    conn.execute(text(f'DELETE FROM "{table}"'))
                if "sqlite_sequence" in inspect(conn).get_table_names():
                    conn.execute(text("DELETE FROM sqlite_sequence"))
    finally:
        engine.dispose()


def batch_sizes(value: str) -> list[int]:
    sizes = [int(part) for part in value.split(",") if part.strip()]
    if any(size <= 0 for size in sizes):
        raise argparse.ArgumentTypeError("batch sizes must be positive")
    return sizes


def main(argv: list[str] | None = None) -> None:
    default_batch = Settings(database_url="").projection_batch_size
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url",
                        help="SQLAlchemy URL (default: a fresh temporary SQLite file)")
    parser.add_argument("--events", type=int, default=100_000,
                        help="stock events in the projection backlog (default 100000)")
    parser.add_argument("--commands", type=int, default=2_000,
                        help="stock commands through the application, and rows of the "
                             "single-row-commit baseline (default 2000)")
    parser.add_argument("--batch-size", type=int, default=default_batch,
                        help=f"runner batch size for projection_catch_up and the memory "
                             f"figures (default {default_batch}, the application's)")
    parser.add_argument("--batch-sizes", type=batch_sizes, default=[1000, 2000, 5000],
                        help="batch sizes to compare, one projection_catch_up_batch_<n> "
                             "line each (default 1000,2000,5000; '' for none)")
    parser.add_argument("--yes-wipe", action="store_true",
                        help="wipe the database even if its name has no 'bench' or 'test'")
    args = parser.parse_args(argv)
    if args.events < 1 or args.commands < 1:
        parser.error("--events and --commands must be positive")

    scratch = tempfile.TemporaryDirectory(prefix="fenxiao-bench-")
    url = args.database_url or f"sqlite:///{Path(scratch.name) / 'bench.db'}"
    report = Report()
    try:
        prepare(url, args.yes_wipe, fresh=args.database_url is None)
        run(url, args, report)
    finally:
        scratch.cleanup()


def run(url: str, args: argparse.Namespace, report: Report) -> None:
    backend = make_url(url).get_backend_name()
    note(f"[{backend}] raw driver baselines: {args.commands} single-row commits, "
         f"{args.events} rows in batches of 1000")
    base = raw.measure(url, single_rows=args.commands, batched_rows=args.events)
    report.emit("raw_single_row_commit", base["raw_single_row_commit"], "rows/s")
    report.emit("raw_batched_insert", base["raw_batched_insert"], "rows/s")

    app = Fenxiao(Settings(database_url=url, projection_batch_size=args.batch_size))
    try:
        expected: workloads.Expected = {}
        note(f"[{backend}] {args.commands} stock commands through app.execute")
        per_s = workloads.stock_commands(app, args.commands, expected)
        report.emit("stock_commands", per_s, "commands/s", "raw_single_row_commit")

        note(f"[{backend}] writing a backlog of {args.events} stock events with app.save")
        started = time.perf_counter()
        items = workloads.write_backlog(app, args.events, expected)
        events = workloads.projected_events(app)
        note(f"  {items} stock items, {time.perf_counter() - started:.1f} s; the projection "
             f"reads {events} events (backlog + commands), log head {app.last_position()}")

        seconds = workloads.catch_up(app, args.batch_size)
        on_hand, reserved = workloads.verify(app, expected)
        note(f"[{backend}] catch-up from zero, batch {args.batch_size}: {seconds:.2f} s "
             f"(rm_inventory verified item by item: {len(expected)} items, on_hand "
             f"{on_hand}, reserved {reserved})")
        report.emit("projection_catch_up", events / seconds, "events/s", "raw_batched_insert")

        sweep: dict[int, float] = {}
        for size in args.batch_sizes:
            seconds = workloads.catch_up(app, size)
            workloads.verify(app, expected)
            sweep[size] = events / seconds
            note(f"[{backend}] catch-up from zero, batch {size}: {seconds:.2f} s (verified)")
            report.emit(f"projection_catch_up_batch_{size}", sweep[size], "events/s",
                        "raw_batched_insert")
        if sweep:
            best = max(sweep, key=sweep.__getitem__)
            note(f"[{backend}] best batch size: {best} ({sweep[best]:,.0f} events/s)")

        memory = workloads.catch_up_memory(app, args.batch_size)
        workloads.verify(app, expected)
        note(f"[{backend}] tracemalloc peak: first half of the log "
             f"{memory.first_half_peak_mib:.2f} MiB, second half "
             f"{memory.second_half_peak_mib:.2f} MiB; process max RSS "
             f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        report.emit("projection_catch_up_peak_memory", memory.peak_mib, "MiB")
        report.emit("projection_catch_up_memory_growth", memory.growth_mib, "MiB")
    finally:
        app.close()


if __name__ == "__main__":
    main()
