"""Full rebuilds of the read models from the log: each projection alone, then all together.

    python -m benchmarks.rebuild [--database-url URL] [--events 20000]
                                 [--projections inventory,ledger,...] [--batch-size N]

Against a database holding a log (make one with `python -m benchmarks.audit_log`); with no
`--database-url`, a log of `--events` events is generated first into a temporary SQLite
file. Every measurement runs in a fresh subprocess, so each has its own peak memory: the
process's maximum resident set size (peak RSS, which includes the interpreter and the
application, about 100 MiB before any event is read) and its growth while the second half
of the log is applied over the first half's peak ("flat memory": about zero, whatever the
size of the log).

Prints JSON lines like `python -m benchmarks`. The baseline is the raw driver reading the
whole event table (id, aggregate, version, topic, state) in log order, measured in the same
run (it also warms the database's cache for what follows). For a projection NAME:

  rebuild_NAME            relevant events per second: the events NAME reads
  rebuild_NAME_log        log events per second: the whole log over the same time (for
                          `all`: the log turned into every read model)
  rebuild_NAME_cpu        relevant events per second of the rebuilding process's CPU time
                          (user + system; the database server's is not in it): a figure
                          that a busy machine disturbs less than the wall clock's
  rebuild_NAME_events     how many events NAME reads
  rebuild_NAME_peak_rss   MiB
  rebuild_NAME_rss_growth MiB
  rebuild_NAME_floor      the fastest a rebuild that builds aside and swaps could go in
                          relevant events per second, with no work per event at all:
                          the raw driver reading NAME's events, plus the database writing
                          the rows its rebuild ends with into scratch tables (one COPY
                          per table) and swapping them in, as a rebuild does
  rebuild_NAME_of_floor   rebuild_NAME / rebuild_NAME_floor
  rebuild_reads_only      log events per second of the runner taking the whole log
                          through a projection that does nothing with its events (read
                          and decoded, then dropped): what every rebuild pays per event
                          before any work of its own (and `_cpu`)

and the same for `all` (every projection rebuilt one after the other in one process;
relevant = the sum over the projections). It rebuilds the read models of the target
database (a rebuild builds aside and swaps, readers are never disturbed), but refuses a
database whose name contains neither "bench" nor "test" unless --yes-rebuild is given.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from benchmarks.__main__ import Report, note, prepare
from benchmarks.raw import raw_log_read

MIB = 1024  # ru_maxrss is in KiB on Linux


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB


def cpu_s() -> float:
    """This process's CPU time so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def application(url: str) -> Iterator[Any]:
    """The application on `url` (no rate limits), closed afterwards."""
    from commands import Fenxiao
    from commands.settings import Settings

    app = Fenxiao(Settings.from_env(database_url=url, rate_limit=None))
    try:
        yield app
    finally:
        app.close()


def projections_named(names: list[str]) -> list[Any]:
    from projections import all_projections

    return [p for p in all_projections() if p.name in names]


def measure(url: str, names: list[str], batch_size: int | None) -> dict[str, Any]:
    """In this process: rebuild the named projections one after the other; the figures."""
    from projections.runner import ProjectionRunner

    with application(url) as app:
        projections = projections_named(names)
        runner = ProjectionRunner(app, projections, batch_size=batch_size)
        head = app.last_position()
        events = app.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
        with app.engine.connect() as conn:
            relevant = sum(conn.execute(select(func.count()).select_from(events).where(
                events.c.topic.in_(p.topics()))).scalar_one() for p in projections)
        total = head * len(projections)  # positions the rebuilds move through, in all
        done, half_peak = 0, []

        def progress(moved: int) -> None:
            nonlocal done
            done += moved
            if not half_peak and done >= total / 2:
                half_peak.append(peak_rss_mib())

        before = peak_rss_mib()
        started, started_cpu = time.perf_counter(), cpu_s()
        for projection in projections:
            runner.rebuild(projection.name, progress=progress)
        seconds, cpu = time.perf_counter() - started, cpu_s() - started_cpu
        peak = peak_rss_mib()
        return {"names": names, "head": head, "relevant": relevant, "seconds": seconds,
                "cpu": cpu, "rss_before": before, "peak_rss": peak,
                "rss_growth": peak - (half_peak[0] if half_peak else peak)}


def write_floor(url: str, name: str) -> dict[str, Any]:
    """In this process: the database work of a rebuild of `name` without any work per
    event, timed: its scratch tables made, the rows its live tables hold now (as its
    rebuild left them) written into them, one INSERT (COPY) per table, and swapped in as a
    rebuild swaps. The live rows, parked events and position come out as they were."""
    from commands.storage import parked_events, tracking
    from projections.batching import insert
    from projections.scratch import ScratchBuild

    with application(url) as app:
        [projection] = projections_named([name])
        with app.engine.connect() as conn:
            rows = {t: [dict(r._mapping) for r in conn.execute(select(t))]
                    for t in projection.tables}
            rows[parked_events] = [dict(r._mapping) for r in conn.execute(
                select(parked_events).where(parked_events.c.projection == name))]
            rows[tracking] = [dict(r._mapping) for r in conn.execute(
                select(tracking).where(tracking.c.name == name))]
        started = time.perf_counter()
        with ScratchBuild(app, [projection]) as build:
            with build.reading() as conn:
                for table, its_rows in rows.items():
                    insert(conn, table, its_rows)
            build.swap(name)
        return {"seconds": time.perf_counter() - started,
                "rows": sum(len(r) for r in rows.values())}


def reads_only(url: str, batch_size: int | None) -> dict[str, Any]:
    """In this process: the runner taking the whole log through a projection that does
    nothing with its events (read, decoded, dropped), in scratch tables, as a rebuild
    takes the log: what every projection pays before any work of its own."""
    from projections.base import Projection
    from projections.scratch import ScratchBuild

    class ReadsOnly(Projection):
        name, tables, handlers = "bench_reads_only", (), {}

        def __init__(self, topics: list[str]) -> None:
            self._topics = topics

        def topics(self) -> list[str]:  # type: ignore[override]
            return self._topics

        def apply_batch(self, conn: Any, events: Any) -> None:
            pass

    with application(url) as app:
        events = app.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
        with app.engine.connect() as conn:
            topics = sorted(conn.execute(select(events.c.topic).distinct()).scalars())
        started, started_cpu = time.perf_counter(), cpu_s()
        with ScratchBuild(app, [ReadsOnly(topics)], batch_size) as build:
            build.build()
        return {"seconds": time.perf_counter() - started, "cpu": cpu_s() - started_cpu,
                "events": app.last_position()}


def measure_in_subprocess(url: str, names: list[str], batch_size: int | None,
                          mode: str = "--measure") -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.rebuild", mode, ",".join(names),
               "--database-url", url]
    if batch_size:
        command += ["--batch-size", str(batch_size)]
    done = subprocess.run(command, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise SystemExit(f"measuring {names} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rebuild", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url",
                        help="a database holding a log (default: generate one into a "
                             "temporary SQLite file)")
    parser.add_argument("--events", type=int, default=20_000,
                        help="without --database-url: the size of the log to generate "
                             "(default 20000)")
    parser.add_argument("--projections",
                        help="comma-separated projection names (default: every one)")
    parser.add_argument("--batch-size", type=int,
                        help="the runner's batch size (default: the application's)")
    parser.add_argument("--yes-rebuild", action="store_true",
                        help="rebuild even if the database's name has no 'bench' or 'test'")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the subprocess's side
    parser.add_argument("--floor", help=argparse.SUPPRESS)  # the subprocess's side
    parser.add_argument("--reads-only", help=argparse.SUPPRESS)  # the subprocess's side
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.database_url, args.measure.split(","),
                                 args.batch_size)))
        return
    if args.floor:
        print(json.dumps(write_floor(args.database_url, args.floor)))
        return
    if args.reads_only:
        print(json.dumps(reads_only(args.database_url, args.batch_size)))
        return

    from projections import all_projections

    known = [p.name for p in all_projections()]
    names = args.projections.split(",") if args.projections else known
    if unknown := set(names) - set(known):
        parser.error(f"unknown projections {sorted(unknown)}; known: {known}")
    scratch = tempfile.TemporaryDirectory(prefix="fenxiao-bench-")
    try:
        url = args.database_url
        if url is None:
            from benchmarks.audit_log import generate

            url = f"sqlite:///{Path(scratch.name) / 'bench.db'}"
            prepare(url, wipe_ok=False, fresh=True)
            note(f"generating a log of {args.events} events")
            generate(url, args.events)
        else:
            guard(url, args.yes_rebuild)
        run(url, names, args.batch_size)
    finally:
        scratch.cleanup()


def guard(url: str, yes: bool) -> None:
    parsed = make_url(url)
    name = Path(parsed.database or "").name
    if not yes and "bench" not in name and "test" not in name:
        raise SystemExit(f"refusing to rebuild the read models of {name!r}: its name "
                         "contains neither 'bench' nor 'test' (pass --yes-rebuild)")


def run(url: str, names: list[str], batch_size: int | None) -> None:
    report = Report()
    rows, per_s = raw_log_read(url)
    note(f"raw read of the log: {rows} events, {per_s:,.0f} rows/s")
    report.emit("raw_log_read", per_s, "rows/s")
    figures = measure_in_subprocess(url, ["-"], batch_size, "--reads-only")
    note(f"the runner reading and decoding the whole log, doing nothing with it: "
         f"{figures['events']} events in {figures['seconds']:.2f} s")
    report.emit("rebuild_reads_only", figures["events"] / figures["seconds"], "events/s",
                "raw_log_read")
    report.emit("rebuild_reads_only_cpu", figures["events"] / figures["cpu"],
                "events/cpu-s")
    for label, measured in [*((name, [name]) for name in names), ("all", names)]:
        figures = measure_in_subprocess(url, measured, batch_size)
        seconds = figures["seconds"]
        note(f"rebuild {label}: {figures['relevant']} relevant events of {figures['head']} "
             f"in {seconds:.2f} s ({figures['cpu']:.2f} s of CPU in this process); peak "
             f"RSS {figures['peak_rss']:.0f} MiB ({figures['rss_before']:.0f} before)")
        report.emit(f"rebuild_{label}", figures["relevant"] / seconds, "events/s",
                    "raw_log_read")
        report.emit(f"rebuild_{label}_log", figures["head"] / seconds, "events/s",
                    "raw_log_read")
        report.emit(f"rebuild_{label}_cpu", figures["relevant"] / figures["cpu"],
                    "events/cpu-s")
        report.emit(f"rebuild_{label}_events", figures["relevant"], "events")
        report.emit(f"rebuild_{label}_peak_rss", figures["peak_rss"], "MiB")
        report.emit(f"rebuild_{label}_rss_growth", figures["rss_growth"], "MiB")
        if label != "all":
            emit_floor(report, url, label, figures["relevant"])


def emit_floor(report: Report, url: str, name: str, relevant: int) -> None:
    """The fastest a rebuild of `name` that builds aside and swaps could go here: the raw
    driver reading its events, plus the database writing its rows into scratch tables
    and swapping them in (`write_floor`), with no work per event at all."""
    [projection] = projections_named([name])
    read, per_s = raw_log_read(url, topics=projection.topics())
    read_s = read / per_s if read else 0.0
    write = measure_in_subprocess(url, [name], None, "--floor")
    seconds = read_s + write["seconds"]
    note(f"floor {name}: reading its {read} events {read_s:.2f} s, writing its "
         f"{write['rows']} rows aside and swapping them in {write['seconds']:.2f} s")
    report.emit(f"rebuild_{name}_floor", relevant / seconds, "events/s")
    report.emit(f"rebuild_{name}_of_floor", report.values[f"rebuild_{name}"]
                / report.values[f"rebuild_{name}_floor"], "ratio")


if __name__ == "__main__":
    main()
