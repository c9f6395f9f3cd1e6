"""Read model: shipments with their whole history (warehouse steps and every carrier event,
late ones included, in the order they were recorded), and the carriers' rate cards.

Every shipment moves through several events, so a batch is folded into rows and written
with a few statements (projections/batching.py), not a statement or two per event."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import Boolean, Column, DateTime, Integer, String, Table, Text, select
from sqlalchemy.engine import Connection

from commands.storage import BIGINT, metadata, upsert
from domain.carriers import Carriers
from domain.fulfilment import Shipment
from projections.batching import FoldingProjection, Rows, insert

shipments = Table(
    "rm_shipments", metadata,
    Column("shipment_id", String(64), primary_key=True),
    Column("shipment_uuid", String(36), nullable=False, unique=True),  # the aggregate's id
    Column("source", String(20), nullable=False),  # order, purchase_order, exchange, repair
    Column("order_id", String(64), nullable=True, index=True),
    Column("purchase_order_id", String(64), nullable=True, index=True),
    Column("case_id", String(64), nullable=True, index=True),  # exchange, repair
    Column("warehouse_id", String(64), nullable=False),
    Column("region", Text, nullable=True),
    Column("status", String(20), nullable=False),
    Column("carrier", String(64), nullable=True),
    Column("tracking_number", String(64), nullable=True),
    Column("lines", Text, nullable=False),  # JSON [{sku, quantity}]
    Column("fee_minor", BIGINT, nullable=True),  # the chosen carrier's quote
    Column("days", Integer, nullable=True),
    Column("meets_promise", Boolean, nullable=True),
    Column("chosen_by", String(20), nullable=True),
    Column("alternatives", Text, nullable=True),  # JSON [{carrier, fee_minor, days, ...}]
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("dispatched_at", DateTime(timezone=True), nullable=True),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
)

# One row per step of a shipment: `version` is the shipment event's, so rows come back in
# the order they were recorded (a late carrier event sits where it arrived).
shipment_events = Table(
    "rm_shipment_events", metadata,
    Column("shipment_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("kind", String(10), nullable=False),  # warehouse, carrier
    Column("status", String(20), nullable=False),
    Column("event_id", String(64), nullable=True),  # the carrier's
    Column("location", Text, nullable=True),
    Column("applied", Boolean, nullable=False),  # false: a late event, kept for the record
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

carriers = Table(
    "rm_carriers", metadata,
    Column("carrier", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("base_fee_minor", BIGINT, nullable=False),
    Column("per_item_fee_minor", BIGINT, nullable=False),
    Column("default_days", Integer, nullable=False),
    Column("promised_days", Text, nullable=False),  # JSON {region: days}
)


def _utc(at: datetime) -> datetime:
    return at.astimezone(timezone.utc)


class _Batch:
    """A batch folded into rows (projections/batching.py): the shipments it creates and
    moves, read in one query and written back once, and one INSERT of every step."""

    def __init__(self, conn: Connection, events: Sequence[Any]) -> None:
        self.conn = conn
        self.shipments = Rows(shipments, "shipment_uuid")
        self.shipments.load(conn, [str(e.originator_id) for e in events
                                   if type(e) in _MOVES])
        self.steps: list[dict[str, Any]] = []

    def step(self, shipment_id: str, e: Any, status: str, *, kind: str = "warehouse",
             event_id: str | None = None, location: str | None = None,
             applied: bool = True, occurred_at: datetime | None = None,
             recorded_at: datetime | None = None) -> None:
        at = e.at if occurred_at is None else occurred_at
        self.steps.append({
            "shipment_id": shipment_id, "version": e.originator_version, "kind": kind,
            "status": status, "event_id": event_id, "location": location,
            "applied": applied, "occurred_at": _utc(at),
            "recorded_at": _utc(recorded_at or at)})

    def moved(self, e: Any, **values: Any) -> str:
        """Only ShipmentCreated names its shipment id; later events name the aggregate
        (which must have a row). Returns the shipment id."""
        row = self.shipments.one(self.conn, str(e.originator_id))
        self.shipments.update(self.conn, str(e.originator_id), **values)
        return row["shipment_id"]

    def write(self) -> None:
        self.shipments.write(self.conn)
        insert(self.conn, shipment_events, self.steps)


def _created(batch: _Batch, e: Any) -> None:
    batch.shipments.insert({
        "shipment_id": e.shipment_id, "shipment_uuid": str(e.originator_id),
        "source": e.source, "order_id": e.source_id if e.source == "order" else None,
        "purchase_order_id": e.source_id if e.source == "purchase_order" else None,
        "case_id": e.source_id if e.source in ("exchange", "repair") else None,
        "warehouse_id": e.warehouse_id, "region": e.region, "status": "created",
        "lines": _json([{"sku": x["sku"], "quantity": x["quantity"]} for x in e.lines]),
        "created_at": _utc(e.at)})
    batch.step(e.shipment_id, e, "created")


def _warehouse_step(status: str) -> Any:
    def fold(batch: _Batch, e: Any) -> None:
        batch.step(batch.moved(e, status=status), e, status)
    return fold


def _dispatched(batch: _Batch, e: Any) -> None:
    shipment_id = batch.moved(
        e, status="dispatched", carrier=e.carrier, tracking_number=e.tracking_number,
        fee_minor=e.fee_minor, days=e.days, meets_promise=e.meets_promise,
        chosen_by=e.chosen_by, alternatives=_json(e.alternatives), dispatched_at=_utc(e.at))
    batch.step(shipment_id, e, "dispatched")


def _carrier_event(batch: _Batch, e: Any) -> None:
    values: dict[str, Any] = {}
    if e.applied:
        values["status"] = e.status
        if e.status == "delivered":
            values["delivered_at"] = _utc(e.occurred_at)
    shipment_id = batch.moved(e, **values)
    batch.step(shipment_id, e, e.status, kind="carrier", event_id=e.event_id,
               location=e.location, applied=e.applied, occurred_at=e.occurred_at,
               recorded_at=e.received_at)


def _rate_card(batch: _Batch, e: Any) -> None:
    """Rare: written at once (only rate card events touch rm_carriers)."""
    row = {"name": e.name, "base_fee_minor": e.base_fee_minor,
           "per_item_fee_minor": e.per_item_fee_minor, "default_days": e.default_days,
           "promised_days": _json(e.promised_days)}
    upsert(batch.conn, carriers, [{"carrier": e.carrier, **row}], ["carrier"], row)


# event class -> what it does to the batch's rows
_FOLD = {
    Shipment.ShipmentCreated: _created,
    Shipment.ShipmentPicked: _warehouse_step("picked"),
    Shipment.ShipmentPacked: _warehouse_step("packed"),
    Shipment.ShipmentDispatched: _dispatched,
    Shipment.ShipmentCancelled: _warehouse_step("cancelled"),
    Shipment.CarrierEventRecorded: _carrier_event,
    Carriers.CarrierAdded: _rate_card,
    Carriers.RateCardChanged: _rate_card,
}
_MOVES = set(_FOLD) - {Shipment.ShipmentCreated, Carriers.CarrierAdded,
                       Carriers.RateCardChanged}


class ShipmentsProjection(FoldingProjection):
    name = "shipments"
    tables = (shipments, shipment_events, carriers)
    fold = _FOLD
    batch_class = _Batch


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    if at.tzinfo is None:  # SQLite keeps no offset: what we stored was UTC
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat()


def _choice(row: Any) -> dict[str, Any] | None:
    if row.chosen_by is None:
        return None
    return {"carrier": row.carrier, "fee": row.fee_minor, "days": row.days,
            "meets_promise": bool(row.meets_promise), "chosen_by": row.chosen_by,
            "alternatives": [{"carrier": q["carrier"], "fee": q["fee_minor"],
                              "days": q["days"], "meets_promise": q["meets_promise"]}
                             for q in json.loads(row.alternatives)]}


def _event_view(row: Any) -> dict[str, Any]:
    return {"kind": row.kind, "status": row.status, "event_id": row.event_id,
            "location": row.location, "applied": bool(row.applied),
            "occurred_at": _iso(row.occurred_at), "recorded_at": _iso(row.recorded_at)}


def _shipment_view(row: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    return {"shipment_id": row.shipment_id, "source": row.source, "order_id": row.order_id,
            "purchase_order_id": row.purchase_order_id, "case_id": row.case_id,
            "warehouse_id": row.warehouse_id,
            "region": row.region, "status": row.status, "carrier": row.carrier,
            "tracking_number": row.tracking_number, "lines": json.loads(row.lines),
            "carrier_choice": _choice(row), "created_at": _iso(row.created_at),
            "dispatched_at": _iso(row.dispatched_at),
            "delivered_at": _iso(row.delivered_at), "events": history}


def _views(conn: Connection, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [row.shipment_id for row in rows]
    history: dict[str, list[dict[str, Any]]] = {sid: [] for sid in ids}
    if ids:
        for step in conn.execute(select(shipment_events)
                                 .where(shipment_events.c.shipment_id.in_(ids))
                                 .order_by(shipment_events.c.shipment_id,
                                           shipment_events.c.version)):
            history[step.shipment_id].append(_event_view(step))
    return [_shipment_view(row, history[row.shipment_id]) for row in rows]


def get_shipment(conn: Connection, shipment_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(shipments)
                       .where(shipments.c.shipment_id == shipment_id)).first()
    return _views(conn, [row])[0] if row else None


def shipments_of_order(conn: Connection, order_id: str) -> list[dict[str, Any]]:
    """The order's shipments, by warehouse (at most one per warehouse)."""
    rows = list(conn.execute(select(shipments).where(shipments.c.order_id == order_id)
                             .order_by(shipments.c.warehouse_id, shipments.c.shipment_id)))
    return _views(conn, rows)


def shipments_of_cases(conn: Connection, case_ids: list[str]
                       ) -> dict[str, list[dict[str, Any]]]:
    """Each after-sales case's shipments (an exchange's replacement, a repair's return)."""
    rows = list(conn.execute(select(shipments).where(shipments.c.case_id.in_(case_ids))
                             .order_by(shipments.c.case_id, shipments.c.warehouse_id,
                                       shipments.c.shipment_id))) if case_ids else []
    found: dict[str, list[dict[str, Any]]] = {case_id: [] for case_id in case_ids}
    for row, view in zip(rows, _views(conn, rows)):
        found[row.case_id].append(view)
    return found


def list_carriers(conn: Connection) -> list[dict[str, Any]]:
    return [{"carrier": r.carrier, "name": r.name, "base_fee_minor": r.base_fee_minor,
             "per_item_fee_minor": r.per_item_fee_minor, "default_days": r.default_days,
             "promised_days": json.loads(r.promised_days)}
            for r in conn.execute(select(carriers).order_by(carriers.c.carrier))]
