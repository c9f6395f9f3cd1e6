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
