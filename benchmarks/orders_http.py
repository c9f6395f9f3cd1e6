"""Orders placed per second through the HTTP layer, against a real server process.

    python -m benchmarks.orders_http [--database-url URL] [--orders 400] [--clients 1,8]

2-line orders (POST /api/v1/orders) from 1 and from 8 concurrent clients, each on its own
keep-alive connection, against `fenxiao serve --no-worker` (the projections are not
what is measured), beside the raw single-row-commit rate of the same database measured
in the same run. Prints JSON lines like `python -m benchmarks`: throughput with its ratio
to the baseline, and p50/p99 latency. It WIPES the target database (same guard).

The floor, for scale: the same server answering, with the same client counts, the least
work an authenticated request can be (GET /api/v1/orders/{id} of an order that does not
exist: the token looked up, one read, a 404), `http_authenticated_404_<n>_clients`, and a
request that is refused before any work (no token: 401), `http_unauthenticated_<n>_clients`.
No order can be placed faster than the first of these.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import raw
from benchmarks.__main__ import Report, note, prepare

SKUS = [f"HB-{n:03d}" for n in range(40)]
REGIONS = ("east", "south")


def seed(url: str) -> str:
    """Warehouses, products with deep stock, and an integration token; return the token."""
    from api.auth import create_token
    from commands import Fenxiao
    from commands.settings import Settings

    app = Fenxiao(Settings(database_url=url, rate_limit=None))
    try:
        for n, region in enumerate(REGIONS):
            app.execute(lambda: app.open_warehouse(f"HW{n}", f"HW{n}", region))
        for sku in SKUS:
            app.execute(lambda: app.add_product(sku, sku, "bench", 990))
            for n in range(len(REGIONS)):
                app.execute(lambda: app.receive_stock(sku, f"HW{n}", 1_000_000, "opening"))
        return create_token(app.engine, "integration", name=f"bench-{os.getpid()}")
    finally:
        app.close()


def order_body(n: int, rng: random.Random) -> bytes:
    first, second = rng.sample(SKUS, 2)
    return json.dumps({
        "customer": {"customer_id": f"C{n % 500}", "name": "Bench Buyer",
                     "phone": "13800000000"},
        "shipping_address": {"region": rng.choice(REGIONS), "city": "Hangzhou",
                             "line1": "1 Bench Road"},
        "lines": [{"sku": first, "quantity": 1}, {"sku": second, "quantity": 2}],
    }).encode()


def floor(port: int, token: str | None, requests: int, clients: int) -> float:
    """Requests per second of GET /api/v1/orders/{an id nobody placed}: 404 with a token,
    401 without."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    expected = 404 if token else 401

    def ask(count: int, failures: list[int]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(count):
            conn.request("GET", "/api/v1/orders/NO-SUCH-ORDER", headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != expected:
                failures.append(response.status)
        conn.close()

    failures: list[int] = []
    seconds = timed([threading.Thread(target=ask, args=(requests // clients, failures))
                     for _ in range(clients)])
    if failures:
        raise SystemExit(f"the floor's requests answered {sorted(set(failures))}")
    return requests // clients * clients / seconds


def timed(threads: list[threading.Thread]) -> float:
    """Run the client threads together; the seconds until the last one is done."""
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def client(port: int, token: str, bodies: list[bytes], latencies: list[float],
           failures: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for body in bodies:
        started = time.perf_counter()
        conn.request("POST", "/api/v1/orders", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 201:
            failures.append(f"{response.status} {payload[:200]!r}")
    conn.close()


def place(port: int, token: str, orders: int, clients: int, seed_n: int
          ) -> tuple[float, list[float], list[str]]:
    rng = random.Random(seed_n)
    bodies = [order_body(seed_n + n, rng) for n in range(orders)]
    latencies: list[float] = []
    failures: list[str] = []
    seconds = timed([threading.Thread(target=client, args=(port, token, bodies[k::clients],
                                                           latencies, failures))
                     for k in range(clients)])
    return orders / seconds, latencies, failures


def serve(url: str, log: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FENXIAO_DATABASE_URL": url, "FENXIAO_RATE_LIMIT": "off",
           "FENXIAO_AUTH_FAILURE_LIMIT": "off"}
    out = log.open("w")
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port),
                               "--no-worker", "--threads", "16"], env=env, stdout=out,
                              stderr=out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, port
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the server died: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not come up")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.orders_http",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh temporary SQLite file")
    parser.add_argument("--orders", type=int, default=400, help="orders per client count")
    parser.add_argument("--clients", default="1,8", help="client counts (default 1,8)")
    parser.add_argument("--yes-wipe", action="store_true")
    args = parser.parse_args(argv)
    scratch = tempfile.TemporaryDirectory(prefix="fenxiao-bench-")
    url = args.database_url or f"sqlite:///{Path(scratch.name) / 'bench.db'}"
    report = Report()
    server = None
    try:
        prepare(url, args.yes_wipe, fresh=args.database_url is None)
        base = raw.measure(url, single_rows=args.orders, batched_rows=1000)
        report.emit("raw_single_row_commit", base["raw_single_row_commit"], "rows/s")
        token = seed(url)
        server, port = serve(url, Path(scratch.name) / "server.log")
        place(port, token, 20, 1, 10**6)  # warm up: connections, caches, first imports
        for n, clients in enumerate(int(c) for c in args.clients.split(",")):
            note(f"{args.orders} orders from {clients} client(s)")
            per_s, latencies, failures = place(port, token, args.orders, clients, n * 10**5)
            if failures:
                raise SystemExit(f"{len(failures)} orders failed, e.g. {failures[0]}")
            report.emit(f"orders_http_{clients}_clients", per_s, "orders/s",
                        "raw_single_row_commit")
            cuts = statistics.quantiles(latencies, n=100)
            report.emit(f"orders_http_{clients}_clients_p50", cuts[49] * 1000, "ms")
            report.emit(f"orders_http_{clients}_clients_p99", cuts[98] * 1000, "ms")
        for clients in (int(c) for c in args.clients.split(",")):
            for label, key in (("authenticated_404", token), ("unauthenticated", None)):
                report.emit(f"http_{label}_{clients}_clients",
                            floor(port, key, max(args.orders, 1000), clients), "requests/s",
                            "raw_single_row_commit")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        scratch.cleanup()


if __name__ == "__main__":
    main()
