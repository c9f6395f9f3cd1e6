"""Orders placed per second through the HTTP layer, against real server processes, beside a
plain CRUD implementation of the same endpoint (benchmarks/crud_orders.py) measured in the
same run.

    python -m benchmarks.orders_http [--database-url URL] [--yes-wipe] [--quick]
        [--only flat,hot,crud,floor,queries,visible,reservations] [--orders 600]
        [--rounds 3] [--clients 1,8,32] [--processes 1,2] [--hot-stock N]
        [--open-reservations 100000] [--query-rate 500] [--query-seconds 10]
        [--visible 200]

It WIPES the target database (the same guard as `python -m benchmarks`); the CRUD baseline
makes its own crud_* tables there. Prints JSON lines like `python -m benchmarks`
(metric, value, unit; a ratio where there is a baseline), progress on stderr. After every
figure is printed, it exits with status 1 if anything went wrong (an order refused for
another reason than insufficient stock, a hot SKU oversold, a reservation unaccounted for,
a query answered with an error). `--quick` runs every case in miniature (about half a
minute on SQLite: a smoke test, not a measurement). In a full run, the longest part is
placing the 100,000 open reservations (at ~150 orders/s on 2 cores, over 10 minutes).

Cases (`--only`, default all):

  flat     2-line orders (quantities 1 and 2) of 2 SKUs drawn from 40, customers in two
           regions: `orders_http_<n>_clients` (orders/s, ratio to raw_single_row_commit),
           `_p50`, `_p99` (ms), for each client count (`--clients`) and server process
           count (`--processes`; names gain `_<p>proc` above 1). Fenxiao runs
           `fenxiao serve --no-worker` (the projections are not what is measured), 16
           threads a process.
  hot      the same, every order the same 2 SKUs (HOT-A x1, HOT-B x2) shipped to one region,
           so every order locks or conflicts on the same two stock items:
           `orders_http_hot[_<p>proc]_<n>_clients`.
  crud     the CRUD baseline beside flat and hot: `crud_orders[_hot][_<p>proc]_<n>_clients`
           (and `_p50`, `_p99`), and Fenxiao's `..._of_crud` (orders/s Fenxiao / CRUD) and
           `..._p99_of_crud`. Each load runs in `--rounds` rounds, Fenxiao's then the
           CRUD's, alternating, so the machine's noise falls on both; `--orders` orders
           per load per system in all. Refusals are counted by error code:
           `<load>_refused_<code>`.
  floor    for scale, the same server (1 process) answering the least work an
           authenticated request can be (GET /api/v1/orders/{an id nobody placed}: the
           token looked up, one read, a 404), `http_authenticated_404_<n>_clients`, and a
           request refused before any work (no token: 401),
           `http_unauthenticated_<n>_clients`. No order can be placed faster than the first.
  queries  against `fenxiao serve` WITH its worker (projections up to date): GET
           /api/v1/inventory/{sku} and GET /api/v1/orders/{id} alternating, open loop at
           `--query-rate` requests/s offered from 16 client threads for `--query-seconds`
           (after the same load for a second, not counted: the servers' first requests
           open their connections), each latency counted from the request's scheduled
           time:
           `queries_<rate>rps_p50`, `_p99`, `_inventory_p99`, `_order_p99`, `_achieved`.
  visible  one client, the same server: place an order, then GET /api/v1/orders/{id}
           ?min_position=<the reply's position>: `command_to_visible_p50`, `_p99` (ms, from
           the POST to the order read back) and `command_to_visible_read_p50`, `_p99`
           (the GET alone: the wait for the projection).
  reservations  hot orders/s (1 server process) with the few open (unpaid) reservations
           the loads before left on the hot SKUs, `orders_http_hot_open_0_<n>_clients`,
           then again after `--open-reservations` N more unpaid hot orders (placed through
           HTTP by `--seed-clients` clients), `orders_http_hot_open_<N>_<n>_clients`
           (ratio: with / without); `orders_http_hot_open_before` and `_after`: how many
           hot orders were open at each.

At the end, when hot or reservations ran, the zero-oversell check of each system's hot stock
(the store's own state, not a read model): `<system>_hot_orders_accepted` (201s),
`<system>_hot_oversold_units` (reserved beyond on hand, summed over stock rows; must be 0),
`<system>_hot_unaccounted_units` (|units reserved - accepted orders x units per order|,
summed over the two SKUs; must be 0), <system> being orders_http (Fenxiao) or crud_orders.

2 server processes: `fenxiao serve --workers 2` when this Fenxiao has that option, and then
the CRUD baseline's own `--workers 2` (both: 2 processes behind one port); otherwise 2
single-process servers of each on 2 ports, the clients split evenly between them.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from benchmarks import crud_orders, raw
from benchmarks.__main__ import Report, note, prepare
from benchmarks.http_load import (Call, Servers, Tally, connect, deal, drive, error_code,
                                  free_port, headers_for, percentiles_ms, send, serving)

SKUS = [f"HB-{n:03d}" for n in range(40)]
HOT = {"HOT-A": 1, "HOT-B": 2}  # the hot pair: units of each per order
HOT_REGION = "east"
WAREHOUSES = [("HW0", "east"), ("HW1", "south")]
REGIONS = tuple(region for _, region in WAREHOUSES)
PRICE = 990
DEEP = 1_000_000  # units per SKU per warehouse: no load here runs out of them
THREADS = 16  # server threads per process, for both systems
WARM_UP_S = 1.0  # the query load run before it is measured
FENXIAO, CRUD = "orders_http", "crud_orders"  # also the metric prefixes
CASES = ("flat", "hot", "crud", "floor", "queries", "visible", "reservations")
FULL = dict(orders=600, rounds=3, clients="1,8,32", processes="1,2", hot_stock=DEEP,
            open_reservations=100_000, seed_clients=8, query_rate=500, query_seconds=10.0,
            visible=200, floor_requests=1000, read_orders=200)
QUICK = dict(orders=24, rounds=2, clients="1,3", processes="1,2", hot_stock=DEEP,
             open_reservations=60, seed_clients=4, query_rate=40, query_seconds=1.0,
             visible=5, floor_requests=30, read_orders=20)


def stock_plan(hot_stock: int = DEEP) -> dict[str, int]:
    """Units on hand per warehouse, per SKU: the same for both systems."""
    return {**{sku: DEEP for sku in SKUS}, **{sku: hot_stock for sku in HOT}}


def seed(url: str, hot_stock: int = DEEP) -> str:
    """Warehouses, products with their stock, and an integration token; return the token."""
    from api.auth import create_token
    from commands import Fenxiao
    from commands.settings import Settings

    app = Fenxiao(Settings(database_url=url, rate_limit=None))
    try:
        for warehouse_id, region in WAREHOUSES:
            app.execute(lambda: app.open_warehouse(warehouse_id, warehouse_id, region))
        for sku, units in stock_plan(hot_stock).items():
            app.execute(lambda: app.add_product(sku, sku, "bench", PRICE))
            for warehouse_id, _ in WAREHOUSES:
                app.execute(lambda: app.receive_stock(sku, warehouse_id, units, "opening"))
        return create_token(app.engine, "integration", name=f"bench-{os.getpid()}")
    finally:
        app.close()


def fenxiao_stock(url: str, skus: Sequence[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """(sku, warehouse_id) -> (on_hand, reserved), from the stock items themselves."""
    from commands import Fenxiao
    from commands.settings import Settings
    from domain.stock import StockItem

    app = Fenxiao(Settings(database_url=url, rate_limit=None))
    try:
        items = {(sku, w): app.find(StockItem.create_id(sku, w))
                 for sku in skus for w, _ in WAREHOUSES}
        return {key: (item.on_hand, item.reserved) for key, item in items.items() if item}
    finally:
        app.close()


# -- requests -------------------------------------------------------------------------

def order_call(n: int, rng: random.Random, hot: bool) -> Call:
    if hot:
        lines, region = list(HOT.items()), HOT_REGION
    else:
        lines, region = list(zip(rng.sample(SKUS, 2), (1, 2))), rng.choice(REGIONS)
    return Call("POST", "/api/v1/orders", json.dumps({
        "customer": {"customer_id": f"C{n % 500}", "name": "Bench Buyer",
                     "phone": "13800000000"},
        "shipping_address": {"region": region, "city": "Hangzhou", "line1": "1 Bench Road"},
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
    }).encode())


# -- servers --------------------------------------------------------------------------

def server_env(url: str) -> dict[str, str]:
    # No rate limits; and no unpaid order expires during a run (a worker's tick would
    # release the benchmark's reservations, and do that work during a measurement).
    return {"FENXIAO_DATABASE_URL": url, "FENXIAO_RATE_LIMIT": "off",
            "FENXIAO_AUTH_FAILURE_LIMIT": "off",
            "FENXIAO_RESERVATION_TIMEOUT_S": str(30 * 24 * 3600)}


def one_port_for_many() -> bool:
    """Whether several server processes share one port: yes once `fenxiao serve` has
    --workers (then the CRUD baseline uses its own --workers too, so that both spread
    connections the same way); else each process gets its own port."""
    from api.cli import serve

    return any(option.name == "workers" for option in serve.params)


def start_servers(name: str, argv: Sequence[str], url: str, processes: int, logs: Path,
                  others: Sequence[str] = ()) -> Servers:
    """`processes` processes serving `argv` (+ --port): one with --workers N behind one
    port, or N on N ports, `others` added to the options of all but the first."""
    servers = Servers(name, logs, server_env(url))
    if processes > 1 and one_port_for_many():
        port = free_port()
        servers.spawn([*argv, "--port", str(port), "--workers", str(processes)], port)
    else:
        for k in range(processes):
            port = free_port()
            servers.spawn([*argv, "--port", str(port), *(others if k else ())], port)
    return servers


def start_fenxiao(url: str, processes: int, logs: Path, worker: bool = False) -> Servers:
    """`fenxiao serve`, without its worker, or with one (with --workers N, the worker is
    a process of its own; on N ports, it runs in the first server process)."""
    argv = ["-m", "api.cli", "serve", "--threads", str(THREADS)]
    if worker:
        return start_servers("fenxiao", argv, url, processes, logs, others=["--no-worker"])
    return start_servers("fenxiao", [*argv, "--no-worker"], url, processes, logs)


def start_crud(url: str, processes: int, logs: Path) -> Servers:
    return start_servers("crud", ["-m", "benchmarks.crud_orders", "serve", "--database-url",
                                  url, "--threads", str(THREADS)], url, processes, logs)


# -- the run --------------------------------------------------------------------------

@dataclass
class Target:
    system: str  # FENXIAO or CRUD
    ports: list[int]
    token: str


@dataclass
class Run:
    url: str
    args: argparse.Namespace
    report: Report
    logs: Path
    tokens: dict[str, str] = field(default_factory=dict)
    hot_orders: Counter[str] = field(default_factory=Counter)  # accepted, per system
    failures: list[str] = field(default_factory=list)
    sequence: int = 0  # every batch of orders gets its own customers and SKU draws

    def calls(self, count: int, hot: bool) -> list[Call]:
        self.sequence += 1
        rng, first = random.Random(self.sequence), self.sequence * 10**6
        return [order_call(first + n, rng, hot) for n in range(count)]

    def place(self, target: Target, count: int, clients: int, hot: bool,
              keep: bool = False) -> Tally:
        """`count` orders from `clients` clients; the refusals that are not a shortage of
        stock are failures."""
        tally = drive(target.ports, target.token, deal(self.calls(count, hot), clients), keep)
        if hot:
            self.hot_orders[target.system] += tally.accepted
        for refusal, n in tally.failures(allowed=("insufficient_stock",)).items():
            self.failures.append(f"{target.system}: {n} x {refusal}")
        return tally

    def rounds(self, targets: Sequence[Target], hot: bool, clients: int) -> list[Tally]:
        """`--orders` orders per target in `--rounds` rounds, the targets taking turns."""
        totals = [Tally() for _ in targets]
        per_round = max(clients, self.args.orders // self.args.rounds)
        for _ in range(self.args.rounds):
            for target, total in zip(targets, totals):
                total.add(self.place(target, per_round, clients, hot))
        return totals

    def emit_load(self, name: str, tally: Tally, baseline: str | None = None) -> None:
        """orders/s (ratio to `baseline`, else to the raw commit rate), p50 and p99, and the
        refusals by code."""
        self.report.emit(name, tally.rate(), "orders/s", baseline or "raw_single_row_commit")
        p50, p99 = percentiles_ms(tally.latencies)
        self.report.emit(f"{name}_p50", p50, "ms")
        self.report.emit(f"{name}_p99", p99, "ms")
        for refusal, n in sorted(tally.refusals.items()):
            self.report.emit(f"{name}_refused_{refusal.split(' ', 1)[1]}", n, "responses")

    def compare(self, fenxiao: Target, crud: Target | None, hot: bool, processes: int,
                clients: int) -> None:
        label = ("_hot" if hot else "") + (f"_{processes}proc" if processes > 1 else "")
        loads = f"{self.args.orders} {'hot' if hot else 'flat'} orders per system"
        note(f"{loads}, {processes} process(es), {clients} client(s)")
        targets = [fenxiao] + ([crud] if crud else [])
        tallies = self.rounds(targets, hot, clients)
        name = f"{FENXIAO}{label}_{clients}_clients"
        self.emit_load(name, tallies[0])
        if crud:
            base = f"{CRUD}{label}_{clients}_clients"
            self.emit_load(base, tallies[1])
            values = self.report.values
            for suffix in ("", "_p99"):
                if values[base + suffix]:
                    self.report.emit(f"{name}{suffix}_of_crud",
                                     values[name + suffix] / values[base + suffix], "ratio")

    def floor(self, port: int, clients: int) -> None:
        """Requests per second of GET /api/v1/orders/{an id nobody placed}: 404 with a
        token, 401 without."""
        for label, token, expected in (("authenticated_404", self.tokens[FENXIAO],
                                        "404 not_found"),
                                       ("unauthenticated", None, "401 unauthorized")):
            count = self.args.floor_requests // clients * clients
            calls = [Call("GET", "/api/v1/orders/NO-SUCH-ORDER")] * count
            tally = drive([port], token, deal(calls, clients))
            if tally.refusals != Counter({expected: count}):
                self.failures.append(f"floor {label}: {dict(tally.refusals)}")
            self.report.emit(f"http_{label}_{clients}_clients", tally.calls / tally.seconds,
                             "requests/s", "raw_single_row_commit")

    def loads(self, processes: int, cases: set[str], clients_list: list[int]) -> None:
        """flat and hot (and the floor) with `processes` server processes per system."""
        fenxiao_servers = start_fenxiao(self.url, processes, self.logs)
        crud_servers = start_crud(self.url, processes, self.logs) if "crud" in cases else None
        with serving(*filter(None, (fenxiao_servers, crud_servers))):
            fenxiao = Target(FENXIAO, fenxiao_servers.ports, self.tokens[FENXIAO])
            crud = crud_servers and Target(CRUD, crud_servers.ports, self.tokens[CRUD])
            for target in filter(None, (fenxiao, crud)):  # connections, caches, imports
                self.place(target, 20 * len(target.ports), len(target.ports), hot=False)
            for hot in (False, True):
                if ("hot" if hot else "flat") in cases:
                    for clients in clients_list:
                        self.compare(fenxiao, crud, hot, processes, clients)
            if processes == 1 and "floor" in cases:
                for clients in clients_list:
                    self.floor(fenxiao.ports[0], clients)

    def queries(self, cases: set[str]) -> None:
        """Open-loop reads against a server with its worker, on as many API processes as
        the most --processes asks for (every core); then command -> visible against one
        process with its worker in-process (what `make run` serves)."""
        for case, processes in (("queries", max(self.args.processes)), ("visible", 1)):
            if case not in cases:
                continue
            servers = start_fenxiao(self.url, processes, self.logs, worker=True)
            with serving(servers):
                target = Target(FENXIAO, servers.ports, self.tokens[FENXIAO])
                placed = self.place(target, self.args.read_orders, 4, hot=False, keep=True)
                replies = [json.loads(body) for body in placed.replies]
                ids = [reply["order_id"] for reply in replies]
                self.caught_up(target, ids[0], max(reply["position"] for reply in replies))
                if case == "queries":
                    self.open_loop(target, ids)
                else:
                    self.visible(target)

    def caught_up(self, target: Target, order_id: str, position: int) -> None:
        """Wait until the worker has projected everything up to `position`, every read
        model (after the loads before, it may have a backlog to work through first: its
        catching up is not what the queries measure)."""
        note(f"waiting for the worker to reach position {position}")
        conn, headers = connect(target.ports[0]), headers_for(target.token)
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            status, payload = send(conn, Call(
                "GET", f"/api/v1/orders/{order_id}?min_position={position}"), headers)
            if status == 200 and self.no_lag(conn, headers):
                conn.close()
                return
            if status not in (200, 503):
                raise SystemExit(f"reading an order back: {error_code(status, payload)}")
            time.sleep(0.5)
        raise SystemExit("the worker did not catch up within 30 minutes")

    @staticmethod
    def no_lag(conn: http.client.HTTPConnection, headers: dict[str, str]) -> bool:
        status, payload = send(conn, Call("GET", "/api/v1/health"), headers)
        return status == 200 and all(
            projection["lag"] == 0 for projection in json.loads(payload)["projections"])

    def open_loop(self, target: Target, order_ids: list[str]) -> None:
        rate, seconds = self.args.query_rate, self.args.query_seconds

        def schedule(seconds: float) -> list[Call]:
            return [Call("GET", f"/api/v1/inventory/{SKUS[n // 2 % len(SKUS)]}",
                         due=n / rate, kind="inventory") if n % 2 == 0 else
                    Call("GET", f"/api/v1/orders/{order_ids[n // 2 % len(order_ids)]}",
                         due=n / rate, kind="order")
                    for n in range(int(rate * seconds))]

        # The same load for a second first, not counted: each server process opens its
        # database connections and fills its token cache at its first requests (the
        # first 0.5 s after a start measured up to 100 ms; a steady rate is what is
        # measured here).
        note(f"queries: {rate} requests/s offered for {WARM_UP_S} s (warm-up, not counted)")
        drive(target.ports, target.token, deal(schedule(WARM_UP_S), 16))
        note(f"queries: {rate} requests/s offered for {seconds} s")
        tally = drive(target.ports, target.token, deal(schedule(seconds), 16))
        for refusal, n in tally.refusals.items():
            self.failures.append(f"queries: {n} x {refusal}")
        name = f"queries_{rate}rps"
        p50, p99 = percentiles_ms(tally.latencies)
        self.report.emit(f"{name}_p50", p50, "ms")
        self.report.emit(f"{name}_p99", p99, "ms")
        for kind in ("inventory", "order"):
            self.report.emit(f"{name}_{kind}_p99", percentiles_ms(tally.by_kind[kind])[1],
                             "ms")
        self.report.emit(f"{name}_achieved", tally.calls / tally.seconds, "requests/s")

    def visible(self, target: Target) -> None:
        """One client: an order placed, then read back at the position its reply gave."""
        note(f"command -> visible: {self.args.visible} orders, one client")
        conn, headers = connect(target.ports[0]), headers_for(target.token)
        totals, reads = [], []
        for call in self.calls(self.args.visible, hot=False):
            started = time.perf_counter()
            status, payload = send(conn, call, headers)
            if status != 201:
                self.failures.append(f"visible: placing: {error_code(status, payload)}")
                continue
            reply = json.loads(payload)
            read_started = time.perf_counter()
            status, payload = send(conn, Call("GET", f"/api/v1/orders/{reply['order_id']}"
                                              f"?min_position={reply['position']}"), headers)
            done = time.perf_counter()
            if status != 200:
                self.failures.append(f"visible: reading: {error_code(status, payload)}")
                continue
            totals.append(done - started)
            reads.append(done - read_started)
        conn.close()
        for name, values in (("command_to_visible", totals),
                             ("command_to_visible_read", reads)):
            p50, p99 = percentiles_ms(values)
            self.report.emit(f"{name}_p50", p50, "ms")
            self.report.emit(f"{name}_p99", p99, "ms")

    def reservations(self, clients_list: list[int]) -> None:
        """Hot orders/s with the open reservations the loads before left (few), then again
        after --open-reservations more unpaid hot orders (placed through HTTP by
        --seed-clients clients); the ratio is with / without."""
        servers = start_fenxiao(self.url, 1, self.logs)
        with serving(servers):
            target = Target(FENXIAO, servers.ports, self.tokens[FENXIAO])
            self.place(target, 20, 1, hot=False)  # warm up
            more = self.args.open_reservations
            for step in ("before", "after"):
                if step == "after":
                    self.open_hot_orders(target, more)
                open_now = self.hot_orders[FENXIAO]
                self.report.emit(f"{FENXIAO}_hot_open_{step}", open_now, "orders")
                for clients in clients_list:
                    note(f"hot orders with {open_now} open reservations, {clients} client(s)")
                    tally = self.rounds([target], True, clients)[0]
                    name = f"{FENXIAO}_hot_open_{0 if step == 'before' else more}"
                    self.emit_load(f"{name}_{clients}_clients", tally,
                                   baseline=None if step == "before" else
                                   f"{FENXIAO}_hot_open_0_{clients}_clients")

    def open_hot_orders(self, target: Target, count: int) -> None:
        """Place `count` more hot orders and leave them unpaid, in batches (for progress)."""
        started, placed = time.perf_counter(), 0
        while placed < count:
            tally = self.place(target, min(count - placed, 5000), self.args.seed_clients,
                               hot=True)
            placed += tally.calls
            note(f"  {placed} of {count} hot orders placed, {tally.accepted} accepted in "
                 f"the last batch ({time.perf_counter() - started:.0f} s)")

    def check_hot(self) -> None:
        """Zero oversell: reserved never beyond on hand, and every accepted order's units
        reserved, no more and no fewer."""
        levels = {FENXIAO: lambda: fenxiao_stock(self.url, list(HOT)),
                  CRUD: lambda: crud_orders.stock_levels(self.url, list(HOT))}
        for system in (FENXIAO, CRUD):
            if system not in self.hot_orders:
                continue
            stock = levels[system]()
            accepted = self.hot_orders[system]
            oversold = sum(max(0, reserved - on_hand) for on_hand, reserved in stock.values())
            unaccounted = sum(abs(sum(r for (s, _), (_, r) in stock.items() if s == sku)
                                  - accepted * units) for sku, units in HOT.items())
            self.report.emit(f"{system}_hot_orders_accepted", accepted, "orders")
            self.report.emit(f"{system}_hot_oversold_units", oversold, "units")
            self.report.emit(f"{system}_hot_unaccounted_units", unaccounted, "units")
            if oversold or unaccounted:
                self.failures.append(f"{system}: hot stock {stock} after {accepted} orders")


def numbers(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.orders_http",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh temporary SQLite file")
    parser.add_argument("--yes-wipe", action="store_true",
                        help="wipe the database even if its name has no 'bench' or 'test'")
    parser.add_argument("--quick", action="store_true",
                        help="every case with tiny loads, on SQLite about half a minute "
                             "(a smoke test, not a measurement)")
    parser.add_argument("--only", default=",".join(CASES),
                        help=f"cases, comma-separated (default: all of {','.join(CASES)})")
    parser.add_argument("--orders", type=int, help=f"orders per load per system "
                        f"(default {FULL['orders']})")
    parser.add_argument("--rounds", type=int, help=f"rounds per load (default "
                        f"{FULL['rounds']})")
    parser.add_argument("--clients", type=numbers, help=f"client counts (default "
                        f"{FULL['clients']})")
    parser.add_argument("--processes", type=numbers, help=f"server processes per system "
                        f"(default {FULL['processes']})")
    parser.add_argument("--hot-stock", type=int, help="units of each hot SKU per warehouse "
                        "(default: deep enough never to run out)")
    parser.add_argument("--open-reservations", type=int, help=f"unpaid hot orders placed "
                        f"before the second reservations figure (default "
                        f"{FULL['open_reservations']})")
    parser.add_argument("--seed-clients", type=int, help=f"clients placing them (default "
                        f"{FULL['seed_clients']})")
    parser.add_argument("--query-rate", type=int, help=f"requests/s offered (default "
                        f"{FULL['query_rate']})")
    parser.add_argument("--query-seconds", type=float, help=f"(default "
                        f"{FULL['query_seconds']})")
    parser.add_argument("--visible", type=int, help=f"orders read back (default "
                        f"{FULL['visible']})")
    parser.add_argument("--floor-requests", type=int, help=f"requests per floor figure "
                        f"(default {FULL['floor_requests']})")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key, None) is None:  # options given win over the mode's defaults
            setattr(args, key, numbers(value) if key in ("clients", "processes") else value)
    cases = {case.strip() for case in args.only.split(",") if case.strip()}
    if cases - set(CASES):
        parser.error(f"unknown case(s) {sorted(cases - set(CASES))}; one of {CASES}")
    if min(args.orders, args.rounds, args.hot_stock, args.seed_clients, args.query_rate,
           args.visible, args.floor_requests) < 1 or args.query_seconds <= 0:
        parser.error("counts, rates and durations must be positive")

    scratch = tempfile.TemporaryDirectory(prefix="fenxiao-bench-")
    url = args.database_url or f"sqlite:///{Path(scratch.name) / 'bench.db'}"
    if url.startswith("sqlite") and max(args.processes) > 1:
        note("SQLite serves from one process (`fenxiao serve --workers` refuses more): "
             "the 2-process loads need PostgreSQL (--database-url)")
        args.processes = [1]
    run = Run(url, args, Report(), Path(scratch.name))
    try:
        prepare(url, args.yes_wipe, fresh=args.database_url is None)
        base = raw.measure(url, single_rows=max(args.orders, 100), batched_rows=1000)
        run.report.emit("raw_single_row_commit", base["raw_single_row_commit"], "rows/s")
        run.tokens[FENXIAO] = seed(url, args.hot_stock)
        if "crud" in cases:
            run.tokens[CRUD] = crud_orders.seed(url, WAREHOUSES, stock_plan(args.hot_stock),
                                                PRICE)
        for processes in args.processes:
            if cases & {"flat", "hot"} or (processes == 1 and "floor" in cases):
                run.loads(processes, cases, args.clients)
        if cases & {"queries", "visible"}:
            run.queries(cases)
        if "reservations" in cases:
            run.reservations(args.clients)
        if run.hot_orders:
            run.check_hot()
    finally:
        scratch.cleanup()
    if run.failures:
        raise SystemExit("FAILED (the figures above are not to be trusted):\n  "
                         + "\n  ".join(run.failures))


if __name__ == "__main__":
    main()
