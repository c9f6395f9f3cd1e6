"""Helpers for API tests: a client with a token per role."""
from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from api.auth import create_token


class Api:
    """A Flask test client that speaks as one of several named tokens."""

    def __init__(self, client: FlaskClient, engine: Any) -> None:
        self.client = client
        self.tokens = {role: create_token(engine, role, name=f"test-{role}")
                       for role in ("admin", "operator", "warehouse", "auditor", "integration")}
        self.tokens["distributor"] = create_token(engine, "distributor", name="test-d1",
                                                  distributor_id="D1")

    def headers(self, role: str | None, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if role:
            headers["Authorization"] = f"Bearer {self.tokens.get(role, role)}"
        return headers

    def post(self, path: str, body: Any = None, role: str | None = "admin", **headers: str):
        return self.client.post(f"/api/v1{path}", json=body, headers=self.headers(role, **headers))

    def get(self, path: str, role: str | None = "admin", **params: Any):
        return self.client.get(f"/api/v1{path}", query_string=params,
                               headers=self.headers(role))

    def seed(self) -> int:
        """Two warehouses, two products, some stock; returns the last position."""
        self.post("/warehouses", {"warehouse_id": "W1", "name": "East", "region": "east"})
        self.post("/warehouses", {"warehouse_id": "W2", "name": "South", "region": "south"})
        for sku, price in (("TEA", 1999), ("CUP", 990)):
            self.post("/products", {"sku": sku, "name": sku.title(),
                                    "price": {"amount": price, "currency": "CNY"}})
        self.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W1", "quantity": 10,
                                      "reference": "PO-1"}, role="warehouse")
        reply = self.post("/stock/receipts", {"sku": "CUP", "warehouse_id": "W2",
                                               "quantity": 5, "reference": "PO-2"})
        return reply.get_json()["position"]


def tables_of(app: Any, projection: Any) -> dict[str, list]:
    """Every row of a projection's tables, as sorted text tuples (comparable across runs)."""
    from sqlalchemy import select

    with app.engine.connect() as conn:
        return {t.name: sorted(tuple(map(str, r)) for r in conn.execute(select(t)))
                for t in projection.tables}


def assert_rebuild_equals_live(app: Any, projection: Any, every_table: bool = False) -> None:
    """Catch the projection up, rebuild it from the log, and compare: equal, and not
    empty (every table holds rows with `every_table`)."""
    from projections.runner import ProjectionRunner

    runner = ProjectionRunner(app, [projection])
    runner.catch_up()
    live = tables_of(app, projection)
    runner.rebuild(projection.name)
    assert tables_of(app, projection) == live
    assert (all if every_table else any)(live.values())


def event_log(app: Any) -> list[tuple[Any, ...]]:
    """Every event as stored, but for what differs between two runs of the same commands
    (the ids each command draws at random, the library's wall-clock timestamp)."""
    import json

    from sqlalchemy import select

    events = app.recorder.events_record_cls.__table__
    with app.engine.connect() as conn:
        rows = conn.execute(select(events).order_by(events.c.id)).all()
    log = []
    for row in rows:
        state = json.loads(row.state)
        state.pop("timestamp")
        for name in ("command_id", "correlation_id"):
            state.get("meta", {}).pop(name, None)
        log.append((row.id, str(row.originator_id), row.originator_version, row.topic,
                    state))
    return log


def deterministic_ids(seed: int = 0) -> list[Any]:
    """Patch the random ids commands draw (uuid4 and the referral codes' secrets) with a
    seeded generator, so two runs of the same commands draw the same ids; returns the
    started patches, to be stopped."""
    import random
    import uuid
    from unittest import mock

    rng = random.Random(seed)

    def uuid4() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    patches = [mock.patch(f"{module}.uuid4", uuid4)
               for module in ("commands.app", "commands.catalog", "commands.fulfilment",
                              "commands.tick")]
    patches.append(mock.patch("commands.distributors.secrets.choice", rng.choice))
    for patch in patches:
        patch.start()
    return patches
