"""A plain CRUD yardstick for POST /api/v1/orders: Flask + SQLAlchemy Core, rows updated in
place, the way most teams would write it. It is what the event-sourced Fenxiao is compared
with (benchmarks/orders_http.py), not part of the product.

    python -m benchmarks.crud_orders seed --database-url URL     # (re)creates the crud_*
                                                                  # tables, prints a token
    python -m benchmarks.crud_orders serve --database-url URL --port P [--workers N]
                                           [--threads 16] [--host 127.0.0.1]

Same request body and validation rules as Fenxiao's (the patterns and limits are imported
from where the product defines them; the schema applying them is this module's own),
same error envelope {"error": {"code", "message", "details"}}, a 201 order JSON with the
same fields (less `position` and the lifecycle times). Per order:

  the token's SHA-256 hex digest looked up in crud_tokens (on its own short connection,
  as Fenxiao does); then one transaction: prices read from crud_products; every stock
  row of the order's SKUs locked (SELECT ... FOR UPDATE, in one order: sku, warehouse, so
  two orders never deadlock); per line, warehouses in the customer's region first, then
  most available, ties by id, split when one is short; short anywhere: 409
  insufficient_stock and nothing reserved (rollback); else the order, its lines and their
  allocations inserted, crud_stock.reserved raised in place, one commit.

Not implemented (the benchmark sends none of them): distributor_id, referral_code and
coupon_code (refused as unknown fields, 422), allow_backorder true (422), Idempotency-Key
(ignored), promotions. Shipping is free (Fenxiao's default). Served by waitress like
Fenxiao: one process with 16 threads, or with --workers N, N such processes accepting on
one shared listening socket. On SQLite (the smoke test) every transaction is BEGIN
IMMEDIATE, SQLite's stand-in for the row locks.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import secrets
import signal
import socket
import sys
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from flask import Flask, Response, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import (BigInteger, Boolean, CheckConstraint, Column, DateTime,
                        ForeignKey, ForeignKeyConstraint, Integer, MetaData, String, Table,
                        bindparam, create_engine, event, select)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

# The rules are the product's (so "the same validation" stays true when they change).
from api.distributors import PHONE_PATTERN
from api.orders import MAX_LINES
from api.schemas import ID_PATTERN, FullMatch, text_pattern
from domain.distributors import normalize_phone
from domain.pricing import MAX_LINE_QUANTITY

CURRENCY = "CNY"
metadata = MetaData()

tokens = Table(
    "crud_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False))
products = Table(
    "crud_products", metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("listed", Boolean, nullable=False))
warehouses = Table(
    "crud_warehouses", metadata,
    Column("warehouse_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("region", String(100), nullable=False))
stock = Table(
    "crud_stock", metadata,
    Column("sku", String(64), ForeignKey("crud_products.sku"), primary_key=True),
    Column("warehouse_id", String(64), ForeignKey("crud_warehouses.warehouse_id"),
           primary_key=True),
    Column("on_hand", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="crud_stock_not_oversold"))
orders = Table(
    "crud_orders", metadata,
    Column("order_id", String(64), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("customer_name", String(100), nullable=False),
    Column("customer_phone", String(20), nullable=False),
    Column("region", String(100), nullable=False),
    Column("city", String(100), nullable=False),
    Column("line1", String(300), nullable=False),
    Column("postcode", String(20)),
    Column("currency", String(3), nullable=False),
    Column("subtotal", BigInteger, nullable=False),
    Column("shipping_fee", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False))
order_lines = Table(
    "crud_order_lines", metadata,
    Column("order_id", String(64), ForeignKey("crud_orders.order_id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("sku", String(64), ForeignKey("crud_products.sku"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("gross", BigInteger, nullable=False))
allocations = Table(
    "crud_allocations", metadata,
    Column("order_id", String(64), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("warehouse_id", String(64), ForeignKey("crud_warehouses.warehouse_id"),
           primary_key=True),
    Column("quantity", Integer, nullable=False),
    ForeignKeyConstraint(["order_id", "line_no"],
                         ["crud_order_lines.order_id", "crud_order_lines.line_no"]))


def engine_for(url: str) -> Engine:
    """SQLAlchemy's default pool, as Fenxiao's store has; on SQLite, writers take the
    database lock when their transaction begins (else two readers that both go on to
    write fail at once instead of waiting)."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _no_implicit_begin(dbapi_conn: Any, _: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    return engine


# -- set-up ---------------------------------------------------------------------------

def reset(url: str) -> None:
    """Drop and create this module's tables (only the crud_* ones)."""
    engine = engine_for(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
    finally:
        engine.dispose()


def seed(url: str, warehouse_regions: Sequence[tuple[str, str]],
         stock_per_warehouse: Mapping[str, int], price: int) -> str:
    """Fresh tables; the warehouses ((id, region) pairs, named by their ids), one product
    per SKU at `price`, each with `stock_per_warehouse[sku]` units on hand in every
    warehouse; return a new integration token."""
    reset(url)
    token = "crud_" + secrets.token_urlsafe(32)
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            conn.execute(warehouses.insert(), [
                {"warehouse_id": w, "name": w, "region": region}
                for w, region in warehouse_regions])
            conn.execute(products.insert(), [
                {"sku": sku, "name": sku, "price": price, "listed": True}
                for sku in stock_per_warehouse])
            conn.execute(stock.insert(), [
                {"sku": sku, "warehouse_id": w, "on_hand": units, "reserved": 0}
                for sku, units in stock_per_warehouse.items() for w, _ in warehouse_regions])
            conn.execute(tokens.insert().values(
                token_hash=digest(token), name="bench", role="integration"))
    finally:
        engine.dispose()
    return token


def stock_levels(url: str, skus: Iterable[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """(sku, warehouse_id) -> (on_hand, reserved)."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(stock).where(stock.c.sku.in_(list(skus))))
            return {(r.sku, r.warehouse_id): (r.on_hand, r.reserved) for r in rows}
    finally:
        engine.dispose()


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- the request schema ---------------------------------------------------------------

class Str(fields.String):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        string = super()._deserialize(value, attr, data, **kwargs)
        if any(0xD800 <= ord(c) <= 0xDFFF for c in string):
            raise ValidationError("must not contain unpaired surrogates")
        return string


class WholeInt(fields.Integer):
    """An integer and only that: no strings, booleans or fractions (2.0 is the integer 2,
    as JSON and Fenxiao have it)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


def an_id(**kwargs: Any) -> Str:
    return Str(validate=FullMatch(
        ID_PATTERN, error="must be 1-64 characters of A-Z a-z 0-9 _ . : -"), **kwargs)


def text(max_length: int, **kwargs: Any) -> Str:
    return Str(validate=[validate.Length(min=1, max=max_length),
                         FullMatch(text_pattern(), error="must be one line of text, not "
                                   "blank, without control characters")], **kwargs)


class CustomerIn(Schema):
    customer_id = an_id(required=True)
    name = text(100, required=True)
    phone = Str(required=True, validate=FullMatch(PHONE_PATTERN, error="not a phone number"))


class AddressIn(Schema):
    region = text(100, required=True)
    city = text(100, required=True)
    line1 = text(300, required=True)
    postcode = text(20, load_default=None)


class LineIn(Schema):
    sku = an_id(required=True)
    quantity = WholeInt(required=True, validate=validate.Range(min=1, max=MAX_LINE_QUANTITY))


class OrderIn(Schema):  # unknown fields: refused (marshmallow's default)
    order_id = an_id(load_default=None)
    customer = fields.Nested(CustomerIn, required=True)
    shipping_address = fields.Nested(AddressIn, required=True)
    lines = fields.List(fields.Nested(LineIn), required=True,
                        validate=validate.Length(min=1, max=MAX_LINES))
    allow_backorder = fields.Boolean(truthy={True}, falsy={False}, load_default=False,
                                     validate=validate.Equal(False, error="not supported"))


ORDER_IN = OrderIn()


# -- the endpoint ---------------------------------------------------------------------

class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def envelope(status: int, code: str, message: str, details: Any = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message,
                                  "details": details or {}}})
    response.status_code = status
    return response


def authenticate(engine: Engine) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(401, "unauthorized", "send Authorization: Bearer <token>")
    with engine.connect() as conn:
        role = conn.execute(select(tokens.c.role).where(
            tokens.c.token_hash == digest(token.strip()))).scalar()
    if role is None:
        raise Refused(401, "unauthorized", "the token is not valid")
    if role not in ("integration", "admin"):
        raise Refused(403, "forbidden", f"role {role} may not place orders")


def read_body() -> dict[str, Any]:
    if not request.is_json:
        raise Refused(415, "unsupported_media_type", "send application/json")
    try:
        data = json.loads(request.get_data())
    except ValueError:
        raise Refused(400, "bad_request", "the request body is not valid JSON") from None
    try:
        return ORDER_IN.load(data)
    except ValidationError as invalid:
        raise Refused(422, "validation_error", "the request is not valid; see details",
                      invalid.messages) from None


def plan(sku: str, quantity: int, region: str, rows: list[Any]) -> tuple[list[Any], int]:
    """Warehouses for one line: the customer's region first, then most available, ties by
    id; ([(warehouse_id, quantity)], units left uncovered)."""
    usable = sorted((r for r in rows if r.on_hand - r.reserved > 0),
                    key=lambda r: (r.region != region, -(r.on_hand - r.reserved),
                                   r.warehouse_id))
    taken, wanted = [], quantity
    for row in usable:
        if wanted == 0:
            break
        take = min(wanted, row.on_hand - row.reserved)
        taken.append((row.warehouse_id, take))
        wanted -= take
    return taken, wanted


def place_order(engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    lines = [(line["sku"], line["quantity"]) for line in body["lines"]]
    skus = [sku for sku, _ in lines]
    if len(set(skus)) != len(skus):
        repeated = sorted({s for s in skus if skus.count(s) > 1})
        raise Refused(409, "duplicate_line", f"each sku may appear on one line only; "
                      f"{repeated[0]} appears more than once",
                      {"sku": repeated[0], "skus": repeated})
    customer, address = body["customer"], body["shipping_address"]
    phone = normalize_phone(customer["phone"])
    order_id = body["order_id"] or "O" + uuid.uuid4().hex[:12].upper()
    region = address["region"].strip()
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        if body["order_id"] and conn.execute(select(orders.c.order_id).where(
                orders.c.order_id == order_id)).first():
            raise Refused(409, "duplicate", f"order {order_id} already exists",
                          {"order_id": order_id})
        catalog = {r.sku: r for r in conn.execute(
            select(products).where(products.c.sku.in_(skus)))}
        for sku in skus:
            if sku not in catalog:
                raise Refused(422, "validation_error", f"there is no product {sku}",
                              {"lines": [f"there is no product {sku}"]})
            if not catalog[sku].listed:
                raise Refused(409, "product_unavailable", f"{sku} is not on sale", {"sku": sku})
        # Lock every stock row of these SKUs, always in the same order.
        rows = conn.execute(
            select(stock.c.sku, stock.c.warehouse_id, stock.c.on_hand, stock.c.reserved,
                   warehouses.c.region)
            .join(warehouses, warehouses.c.warehouse_id == stock.c.warehouse_id)
            .where(stock.c.sku.in_(skus))
            .order_by(stock.c.sku, stock.c.warehouse_id)
            .with_for_update(of=stock)).all()
        plans, short = [], []
        for sku, quantity in lines:
            candidates = [r for r in rows if r.sku == sku]
            taken, uncovered = plan(sku, quantity, region, candidates)
            plans.append(taken)
            if uncovered:
                short.append({"sku": sku, "requested": quantity, "available": sum(
                    max(0, r.on_hand - r.reserved) for r in candidates)})
        if short:  # the transaction rolls back: nothing reserved
            first = short[0]
            raise Refused(409, "insufficient_stock", f"{first['sku']}: {first['requested']} "
                          f"wanted, {first['available']} available", {**first, "lines": short})
        subtotal = sum(catalog[sku].price * quantity for sku, quantity in lines)
        conn.execute(orders.insert().values(
            order_id=order_id, status="placed", customer_id=customer["customer_id"],
            customer_name=customer["name"].strip(), customer_phone=phone, region=region,
            city=address["city"].strip(), line1=address["line1"].strip(),
            postcode=(address["postcode"] or "").strip() or None, currency=CURRENCY,
            subtotal=subtotal, shipping_fee=0, total=subtotal, created_at=now))
        conn.execute(order_lines.insert(), [
            {"order_id": order_id, "line_no": n, "sku": sku, "name": catalog[sku].name,
             "quantity": quantity, "unit_price": catalog[sku].price,
             "gross": catalog[sku].price * quantity}
            for n, (sku, quantity) in enumerate(lines, start=1)])
        picks = [(n, sku, w, q) for n, ((sku, _), chosen) in enumerate(zip(lines, plans), 1)
                 for w, q in chosen]
        conn.execute(allocations.insert(), [
            {"order_id": order_id, "line_no": n, "warehouse_id": w, "quantity": q}
            for n, _, w, q in picks])
        conn.execute(stock.update()
                     .where(stock.c.sku == bindparam("b_sku"),
                            stock.c.warehouse_id == bindparam("b_warehouse"))
                     .values(reserved=stock.c.reserved + bindparam("b_quantity")),
                     [{"b_sku": sku, "b_warehouse": w, "b_quantity": q}
                      for _, sku, w, q in picks])
    return {
        "order_id": order_id, "status": "placed", "distributor_id": None,
        "customer_id": customer["customer_id"], "currency": CURRENCY,
        "lines": [{"line_no": n, "sku": sku, "name": catalog[sku].name, "quantity": quantity,
                   "unit_price": catalog[sku].price, "gross": catalog[sku].price * quantity,
                   "discount": 0, "net": catalog[sku].price * quantity,
                   "allocations": [{"warehouse_id": w, "quantity": q} for w, q in chosen],
                   "backordered": 0, "paid": 0, "refunded": 0}
                  for n, ((sku, quantity), chosen) in enumerate(zip(lines, plans), start=1)],
        "subtotal": subtotal, "discount": 0, "shipping_fee": 0, "total": subtotal,
        "paid": 0, "refunded": 0, "coupon_code": None, "shipments": [],
        "created_at": now.isoformat()}


def create_app(url: str) -> Flask:
    flask = Flask(__name__)
    flask.config["MAX_CONTENT_LENGTH"] = 1 << 20  # as Fenxiao's max_body_bytes
    engine = engine_for(url)

    @flask.post("/api/v1/orders")
    def place() -> Any:
        authenticate(engine)
        try:
            reply = place_order(engine, read_body())
        except IntegrityError:  # the same client order id, committed by a concurrent request
            raise Refused(409, "duplicate", "the order already exists") from None
        return jsonify(reply), 201

    @flask.errorhandler(Refused)
    def refused(error: Refused) -> Response:
        return envelope(error.status, error.code, error.message, error.details)

    @flask.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = {404: "not_found", 405: "method_not_allowed",
                413: "payload_too_large"}.get(status, "http_error")
        return envelope(status, code, error.description or error.name)

    return flask


# -- serving --------------------------------------------------------------------------

def _serve_on(url: str, sock: socket.socket, threads: int) -> None:
    import waitress

    # The engine (and its connections) is made here, in the serving process: never
    # share a pooled connection across a fork.
    waitress.serve(create_app(url), sockets=[sock], threads=threads, ident="crud")


def serve(url: str, host: str, port: int, workers: int, threads: int) -> None:
    """Waitress with `threads` threads in one process, or `workers` processes accepting
    on one listening socket (each connection served by whichever process accepts it)."""
    sock = socket.create_server((host, port), backlog=1024)
    if workers == 1:
        _serve_on(url, sock, threads)
        return
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_serve_on, args=(url, sock, threads), daemon=True)
                for _ in range(workers)]
    for child in children:
        child.start()

    def stop(*_: Any) -> None:
        for child in children:
            child.terminate()
        for child in children:
            child.join(10)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crud_orders",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    seeding = commands.add_parser("seed", help="(re)create the crud_* tables with the "
                                  "catalog and stock of benchmarks.orders_http; print a token")
    seeding.add_argument("--database-url", required=True)
    serving = commands.add_parser("serve", help="serve POST /api/v1/orders")
    serving.add_argument("--database-url", required=True)
    serving.add_argument("--host", default="127.0.0.1")
    serving.add_argument("--port", type=int, default=8001)
    serving.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    serving.add_argument("--threads", type=int, default=16, help="per process (default 16)")
    args = parser.parse_args(argv)
    if args.command == "seed":
        from benchmarks.orders_http import PRICE, WAREHOUSES, stock_plan

        print(seed(args.database_url, WAREHOUSES, stock_plan(), PRICE))
    else:
        if args.workers < 1 or args.threads < 1:
            parser.error("--workers and --threads must be positive")
        serve(args.database_url, args.host, args.port, args.workers, args.threads)


if __name__ == "__main__":
    main()
