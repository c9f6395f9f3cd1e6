"""HTTP load for the benchmarks: client threads on keep-alive connections, and the server
processes they are aimed at.

One client loop serves every case. A case is a list of `Call`s per client thread; each
thread keeps one `http.client` connection to its server and sends its calls one after the
other (closed loop), or each at its own due time (open loop: `Call.due` seconds after the
start, the latency counted from that due time, so a server that falls behind is charged
for the wait of every request queued behind a slow one, not only for the slow one).
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None
    due: float | None = None  # open loop: seconds after the start it is sent at
    kind: str = ""  # for latencies per kind of request


@dataclass
class Tally:
    """What a set of client threads saw. Accepted = any 2xx."""

    seconds: float = 0.0
    calls: int = 0
    accepted: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, every call
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)  # "409 insufficient_stock": n
    replies: list[bytes] = field(default_factory=list)  # accepted bodies, when kept

    def add(self, other: "Tally") -> None:
        """Fold another round in (its seconds add up: rounds run one after the other)."""
        self.seconds += other.seconds
        self.calls += other.calls
        self.accepted += other.accepted
        self.latencies += other.latencies
        for kind, values in other.by_kind.items():
            self.by_kind.setdefault(kind, []).extend(values)
        self.refusals.update(other.refusals)
        self.replies += other.replies

    def rate(self) -> float:
        """Accepted calls per second (a refused order is not an order placed)."""
        return self.accepted / self.seconds

    def failures(self, allowed: Sequence[str] = ()) -> Counter[str]:
        """Refusals other than the `allowed` error codes."""
        return Counter({key: n for key, n in self.refusals.items()
                        if key.split(" ", 1)[1] not in allowed})


def percentiles_ms(latencies: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds (the same cut points the benchmark always printed)."""
    if len(latencies) < 2:
        only = latencies[0] * 1000 if latencies else 0.0
        return only, only
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


def error_code(status: int, payload: bytes) -> str:
    """A refusal as "<status> <code>", the code from the API's error envelope."""
    try:
        code = json.loads(payload)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "no_envelope"
    return f"{status} {code}"


def send(conn: http.client.HTTPConnection, call: Call, headers: dict[str, str]
         ) -> tuple[int, bytes]:
    conn.request(call.method, call.path, body=call.body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def connect(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=120)


def headers_for(token: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _client(port: int, token: str | None, calls: Sequence[Call], start: float, keep: bool,
            out: Tally) -> None:
    conn = connect(port)
    headers = headers_for(token)
    try:
        conn.connect()  # before the start: connecting is not what is measured
        time.sleep(max(0.0, start - time.perf_counter()))  # every client starts together
        for call in calls:
            if call.due is not None:
                started = start + call.due
                time.sleep(max(0.0, started - time.perf_counter()))
            else:
                started = time.perf_counter()
            try:
                status, payload = send(conn, call, headers)
            except (OSError, http.client.HTTPException) as error:  # counted, not fatal
                conn.close()  # the next request opens a new connection
                out.calls += 1
                out.refusals[f"0 {type(error).__name__}"] += 1
                continue
            latency = time.perf_counter() - started
            out.calls += 1
            out.latencies.append(latency)
            out.by_kind.setdefault(call.kind, []).append(latency)
            if 200 <= status < 300:
                out.accepted += 1
                if keep:
                    out.replies.append(payload)
            else:
                out.refusals[error_code(status, payload)] += 1
    finally:
        conn.close()


def drive(ports: Sequence[int], token: str | None, per_client: Sequence[Sequence[Call]],
          keep: bool = False) -> Tally:
    """Run one client thread per list of calls, client k on ports[k % len(ports)] (several
    servers share the clients evenly); the seconds from the start until the last is done.
    Each thread fills its own Tally, folded together at the end."""
    tallies = [Tally() for _ in per_client]
    start = time.perf_counter() + 0.1  # once every thread exists and is connected
    threads = [threading.Thread(target=_client, args=(ports[k % len(ports)], token, calls,
                                                      start, keep, tallies[k]))
               for k, calls in enumerate(per_client)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally(seconds=time.perf_counter() - start)
    for tally in tallies:
        total.add(tally)
    return total


def deal(calls: Sequence[Call], clients: int) -> list[list[Call]]:
    """Calls dealt round-robin to `clients` threads (an open-loop schedule stays in order
    within each thread)."""
    return [list(calls[k::clients]) for k in range(clients)]


# -- server processes -----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Servers:
    """Server processes and the ports clients should spread over. `spawn` starts one and
    returns at once (several start faster side by side); `serving` waits until all listen."""

    name: str
    logs: Path
    env: dict[str, str]
    processes: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def spawn(self, argv: Sequence[str], port: int) -> None:
        with (self.logs / f"{self.name}-{port}.log").open("w") as out:
            self.processes.append(subprocess.Popen(
                [sys.executable, *argv], env={**os.environ, **self.env}, stdout=out,
                stderr=out))
        self.ports.append(port)

    def wait_up(self) -> None:
        deadline = time.monotonic() + 60
        for process, port in zip(self.processes, self.ports):
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if process.poll() is not None:
                        log = (self.logs / f"{self.name}-{port}.log").read_text()
                        raise SystemExit(f"{self.name} died: {log[-2000:]}") from None
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{self.name} did not come up on port {port}") \
                            from None
                    time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def serving(*groups: Servers) -> Iterator[None]:
    """Wait until every group's processes listen; stop them all at the end, come what may."""
    try:
        for group in groups:
            group.wait_up()
        yield
    finally:
        for group in groups:
            group.stop()
