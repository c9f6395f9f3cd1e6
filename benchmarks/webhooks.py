"""Webhook deliveries: how many events per second one worker process pushes to a fast
local receiver, and how long an event takes from its commit to its arrival.

    python -m benchmarks.webhooks [--database-url URL] [--events 5000] [--quick]

The receiver is a process of its own on loopback (http.server, keep-alive, answering 200
at once; it records when each webhook-id arrived). Two phases, with the application's own
sender (projections/webhook_sender.py), signatures and delivery records included:

- throughput: N public events (`withdrawal.requested`, saved a thousand aggregates to a
  commit: a cheap way to a long backlog; the ledger is not involved) already in the log
  when the sender starts; deliveries/s until the receiver has them all. Its baseline:
  the same number of bare HTTP POSTs of the same bodies over one kept-alive connection
  from this process (`raw_http_posts`), measured in the same run.
- latency: events committed one at a time, 50 a second, with the sender idle and
  waiting; each event's commit -> arrival time (the two processes share the wall clock),
  p50 and p99 in milliseconds.

Targets (issue 17): >= 1,000 deliveries/s per worker process, p99 <= 200 ms. Prints JSON
lines like `python -m benchmarks` (progress on stderr); exits 1 if an event was lost. It
WIPES the target database (same guard as `python -m benchmarks`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from benchmarks.__main__ import Report, note, prepare

SEED_CHUNK = 1000
LATENCY_RATE = 50  # events a second in the latency phase


# -- the receiver (a process of its own) -----------------------------------------------

def receive(port_file: str) -> None:
    """Serve on a free loopback port (written to `port_file`); POST records the arrival
    time of its webhook-id; GET /arrivals answers them all as JSON."""
    arrivals: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            arrivals.setdefault(self.headers.get("webhook-id", ""), time.time())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps(arrivals if self.path.endswith("/arrivals")
                              else len(arrivals)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # a thread per connection
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


class ReceiverProcess:
    def __enter__(self) -> "ReceiverProcess":
        self.port_file = tempfile.mktemp(suffix=".port")
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.webhooks",
                                         "--receiver", self.port_file])
        deadline = time.monotonic() + 20
        while not Path(self.port_file).exists() or not Path(self.port_file).read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("the receiver did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{Path(self.port_file).read_text()}/hooks"
        # One client for the polls: making one (its TLS context) costs ~20 ms of CPU, which
        # 20 polls a second would take from the sender measured in this process.
        self.client = httpx.Client(trust_env=False, timeout=30)
        return self

    def arrivals(self) -> dict[str, float]:
        return self.client.get(self.url + "/arrivals").json()

    def wait_for(self, ids: set[str], timeout_s: float) -> dict[str, float]:
        """When every one of `ids` has arrived (or the time-out): the arrivals. Polls a
        count (cheap), so the polling takes next to nothing from the processes measured."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.client.get(self.url + "/count").json() >= len(ids):
                arrived = self.arrivals()
                if ids <= arrived.keys():
                    return arrived
            time.sleep(0.05)
        return self.arrivals()

    def __exit__(self, *_exc: Any) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=10)
        Path(self.port_file).unlink(missing_ok=True)


# -- the phases ----------------------------------------------------------------------------

def withdrawals(app: Any, count: int, prefix: str) -> list[Any]:
    from domain.ledger import Withdrawal

    now = datetime.now(timezone.utc)
    return [Withdrawal.request(f"{prefix}-{n}", f"D{n % 50}", 100 + n, app.settings.currency,
                               now) for n in range(count)]


def public_ids(aggregates: list[Any]) -> list[str]:
    from commands.feed import event_id

    return [event_id(a.id, 1) for a in aggregates]


def raw_posts(url: str, bodies: list[bytes]) -> float:
    """Bare POSTs/s over one kept-alive connection (no database, no signing)."""
    with httpx.Client(trust_env=False) as client:
        started = time.perf_counter()
        for body in bodies:
            client.post(url, content=body, headers={"Content-Type": "application/json",
                                                    "webhook-id": "raw"})
        return len(bodies) / (time.perf_counter() - started)


def throughput(app: Any, receiver: ReceiverProcess, events: int, report: Report) -> bool:
    from commands.feed import INTEGRATION, read_page, topics_for
    from commands.messages import RegisterWebhook
    from projections.webhook_sender import WebhookSender

    reply = app.execute(lambda: RegisterWebhook(receiver.url, ("withdrawal.requested",))
                        .handle(app))
    start = reply.body["position"]
    made = withdrawals(app, events, "T")
    for n in range(0, events, SEED_CHUNK):
        app.save(*made[n:n + SEED_CHUNK])
    with app.engine.connect() as conn:
        sample = read_page(app, conn, start, topics_for(["withdrawal.requested"]), 500,
                           INTEGRATION).items
    bodies = [json.dumps(item).encode() for item in sample]
    report.emit("raw_http_posts", raw_posts(receiver.url, (bodies * (events // 500 + 1))
                                            [:events]), "requests/s")
    ids = set(public_ids(made))
    note(f"throughput: {events} events in the log; starting the sender")
    sender = WebhookSender(app, allow_private=True)
    started = time.perf_counter()
    sender.start()
    try:
        arrived = receiver.wait_for(ids, timeout_s=max(60.0, events / 50))
        seconds = time.perf_counter() - started
    finally:
        sender.stop()
    delivered = len(ids & arrived.keys())
    report.emit("webhook_deliveries", delivered / seconds, "events/s", "raw_http_posts")
    note(f"  {delivered} of {events} delivered in {seconds:.2f} s")
    return delivered == events


def latency(app: Any, receiver: ReceiverProcess, count: int, report: Report) -> bool:
    from projections.webhook_sender import WebhookSender

    sender = WebhookSender(app, allow_private=True).start()
    committed: dict[str, float] = {}
    try:
        time.sleep(1.0)  # the sender is idle, waiting for the log to advance
        for aggregate in withdrawals(app, count, "L"):
            # Through the command runner, as every command is committed (its commit wakes
            # the sender in this process; on PostgreSQL, NOTIFY wakes it in any process).
            app.execute(lambda: {"position": app.record(aggregate)})  # noqa: B023
            committed[public_ids([aggregate])[0]] = time.time()
            time.sleep(1 / LATENCY_RATE)
        arrived = receiver.wait_for(set(committed), timeout_s=30)
    finally:
        sender.stop()
    delays_ms = sorted((arrived[i] - at) * 1000 for i, at in committed.items() if i in arrived)
    if len(delays_ms) < 2:
        return False
    centiles = statistics.quantiles(delays_ms, n=100, method="inclusive")
    report.emit("webhook_commit_to_delivery_p50", centiles[49], "ms")
    report.emit("webhook_commit_to_delivery_p99", centiles[98], "ms")
    note(f"latency: {len(delays_ms)} of {count} events, max {delays_ms[-1]:.1f} ms")
    return len(delays_ms) == count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webhooks",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh temporary SQLite file")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--latency-events", type=int, default=250)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 300 events, 30 "
                                                             "for latency")
    parser.add_argument("--yes-wipe", action="store_true")
    parser.add_argument("--receiver", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver:
        receive(args.receiver)
        return
    if args.quick:
        args.events, args.latency_events = 300, 30
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        prepare(url, args.yes_wipe, fresh=args.database_url is None)
        from commands import Fenxiao
        from commands.settings import Settings

        app = Fenxiao(Settings(database_url=url, webhook_allow_private=True))
        report = Report()
        try:
            with ReceiverProcess() as receiver:
                complete = throughput(app, receiver, args.events, report)
                complete = latency(app, receiver, args.latency_events, report) and complete
        finally:
            app.close()
    if not complete:
        raise SystemExit("an event was not delivered")


if __name__ == "__main__":
    main()
