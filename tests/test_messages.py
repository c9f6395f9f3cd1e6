"""Commands as data: every command is a frozen, hashable value whose fingerprint follows
its inputs, and whose handler is the service method a view called before commands were
values, with the same arguments."""
from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from datetime import datetime, timezone
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import commands.messages as messages
from commands import Fenxiao
from commands.messages import (AddCarrier, AddProduct, AddThresholdPromotion,
                               ApplyDistributor, Command, DispatchShipment, FrozenMap,
                               IssueCoupon, OpenWarehouse, PackShipment, PayOrder,
                               PickShipment, PlaceOrder, ReceiveStock, SetCommissionRule)
from commands.settings import Settings
from domain.carriers import RateCard
from domain.promotions import CouponTerms
from tests.api_support import Api
from tests.conftest import wipe

COMMANDS = [getattr(messages, name) for name in messages.__all__
            if name not in ("Command", "FrozenMap")]
# Fields named otherwise than the service's parameter: `name` and `status` are taken by
# every command (its class name and its HTTP status).
PARAMETER_OF = {"warehouse_name": "name", "product_name": "name", "applicant_name": "name",
                "customer_name": "name", "carrier_name": "name", "carrier_status": "status"}
T0 = datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
ADDRESS = {"region": "east", "city": "Shanghai", "line1": "1 Nanjing Rd", "postcode": None}

FROZEN_MAPS = st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(),
                              max_size=4).map(FrozenMap)


def values_of(hint: Any) -> st.SearchStrategy[Any]:
    return FROZEN_MAPS if hint is FrozenMap else st.from_type(hint)


def commands_of(cls: type[Command]) -> st.SearchStrategy[Command]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: values_of(hints[f.name])
                             for f in dataclasses.fields(cls)})


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# -- values ---------------------------------------------------------------------------

def test_every_command_is_exported_once() -> None:
    def subclasses(cls: type) -> set[type]:
        return {sub for direct in cls.__subclasses__()
                for sub in {direct, *subclasses(direct)}}

    assert set(COMMANDS) == subclasses(Command)
    assert len({cls.__name__ for cls in COMMANDS}) == len(COMMANDS)


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_a_command_is_a_frozen_hashable_value(cls: type[Command], data: st.DataObject
                                              ) -> None:
    command = data.draw(commands_of(cls))
    # Its own decorator: a subclass inherits `is_dataclass` even without one.
    assert "__dataclass_params__" in vars(cls) and cls.__dataclass_params__.frozen
    again = cls(**{f.name: getattr(command, f.name) for f in dataclasses.fields(cls)})
    assert again == command and hash(again) == hash(command)
    assert again.fingerprint() == command.fingerprint()
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(command, first, getattr(command, first))
    # No field shadows what run_command reads from every command.
    assert command.name == cls.__name__ and isinstance(command.status, int)


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_the_fingerprint_changes_exactly_when_an_input_does(cls: type[Command],
                                                            data: st.DataObject) -> None:
    command = data.draw(commands_of(cls))
    field = data.draw(st.sampled_from(dataclasses.fields(cls)))
    other = dataclasses.replace(command, **{
        field.name: data.draw(values_of(typing.get_type_hints(cls)[field.name]))})
    assert (other == command) == (other.fingerprint() == command.fingerprint())


def test_the_same_inputs_to_another_command_are_another_fingerprint() -> None:
    assert PickShipment("S1").fingerprint() != PackShipment("S1").fingerprint()


def test_a_mapping_input_is_the_same_value_in_any_order() -> None:
    shuffled = FrozenMap(dict(reversed(list(ADDRESS.items()))))
    one, two = (PlaceOrder("C1", "Li Lei", "13800138000", address, (("TEA", 1),))
                for address in (FrozenMap(ADDRESS), shuffled))
    assert one == two and hash(one) == hash(two) and one.fingerprint() == two.fingerprint()
    assert list(dict(two.shipping_address)) == list(reversed(ADDRESS))  # order kept


def test_a_fingerprint_is_the_same_from_one_release_to_the_next() -> None:
    # An Idempotency-Key's stored reply is matched by the fingerprint: a retry after a
    # deploy must match the request before it.
    assert PayOrder("O1", 1999, "PAY-1").fingerprint() == (
        "9705e4b88006b545465fa1a0822a33e6466f59e45db704feea7dfeba43809363")


# -- handlers -------------------------------------------------------------------------

class Recorder:
    """An application that only notes which service method a handler calls, and how."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, method: str) -> Callable[..., dict[str, Any]]:
        def record(*args: Any, **kwargs: Any) -> dict[str, Any]:
            self.calls.append((method, args, kwargs))
            return {"method": method}
        return record


def as_the_view_passed(value: Any) -> Any:
    """A view passed a dict and lists where the command holds a FrozenMap and tuples."""
    if isinstance(value, FrozenMap):
        return dict(value)
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_a_handler_calls_its_service_method_with_every_input(cls: type[Command],
                                                             data: st.DataObject) -> None:
    command, app = data.draw(commands_of(cls)), Recorder()
    assert command.handle(app) == {"method": snake_case(cls.__name__)}
    [(method, args, kwargs)] = app.calls
    bound = inspect.signature(getattr(Fenxiao, method)).bind(app, *args, **kwargs)
    passed = {k: v for k, v in bound.arguments.items() if k != "self"}
    expected = {PARAMETER_OF.get(f.name, f.name):
                as_the_view_passed(getattr(command, f.name)) for f in dataclasses.fields(cls)}
    if cls is AddCarrier:  # the service takes the terms as one rate card
        expected = {"card": RateCard(**expected)}
    assert passed == expected
    assert [type(v) for v in passed.values()] == [type(v) for v in expected.values()]


# -- through a real application -------------------------------------------------------

def story(app: Fenxiao, by_command: bool) -> list[dict[str, Any]]:
    """A short day of business, each step either as a command or as the service call a
    view made before; the replies."""
    def step(command: Command, service: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return app.execute((lambda: command.handle(app)) if by_command else service,
                           status=command.status).body

    app.clock = lambda: T0
    card = RateCard("SF", "SF Express", 800, 100, 3, {"east": 1, "south": 2})
    terms = CouponTerms(code="SAVE5", amount_off_minor=500)
    replies = [
        step(OpenWarehouse("W1", "East", "east"), lambda: app.open_warehouse(
            warehouse_id="W1", name="East", region="east")),
        step(AddProduct("TEA", "Tea", "", 1000, None, True),
             lambda: app.add_product("TEA", "Tea", "", 1000, None, True)),
        step(ReceiveStock("TEA", "W1", 5, "PO-1"), lambda: app.receive_stock(
            sku="TEA", warehouse_id="W1", quantity=5, reference="PO-1")),
        step(SetCommissionRule("TEA", "rate", 800, 300),
             lambda: app.set_commission_rule("TEA", "rate", 800, 300)),
        step(ApplyDistributor("Li Na", "13800000001", None, "D1"),
             lambda: app.apply_distributor(name="Li Na", phone="13800000001",
                                           referral_code=None, distributor_id="D1")),
        step(AddCarrier("SF", "SF Express", 800, 100, 3, FrozenMap(card.promised_days)),
             lambda: app.add_carrier(card)),
        step(IssueCoupon(terms), lambda: app.issue_coupon(terms)),
        step(AddThresholdPromotion(((2000, 300),), None, None, "P1"),
             lambda: app.add_threshold_promotion([(2000, 300)], None, None, "P1")),
    ]
    order = step(
        PlaceOrder("C1", "Li Lei", "13800138000", FrozenMap(ADDRESS), (("TEA", 3),),
                   order_id="O1", coupon_code="SAVE5"),
        lambda: app.place_order("C1", "Li Lei", "13800138000", dict(ADDRESS), [("TEA", 3)],
                                order_id="O1", distributor_id=None, referral_code=None,
                                coupon_code="SAVE5", allow_backorder=False))
    paid = step(PayOrder("O1", order["total"], "PAY-1"),
                lambda: app.pay_order("O1", order["total"], "PAY-1"))
    [shipment] = paid["shipments"]
    sid = shipment["shipment_id"]
    return [*replies, order, paid,
            step(PickShipment(sid), lambda: app.pick_shipment(sid)),
            step(PackShipment(sid), lambda: app.pack_shipment(sid)),
            step(DispatchShipment(sid, "SF", "T-1"), lambda: app.dispatch_shipment(
                sid, carrier="SF", tracking_number="T-1"))]


def test_commands_reply_as_the_service_calls_do(db_url: str) -> None:
    replies = []
    for by_command in (True, False):
        wipe(db_url)  # the same history twice, from nothing
        app = Fenxiao(Settings(database_url=db_url, rate_limit=None,
                               auth_failure_limit=None))
        try:
            replies.append(story(app, by_command))
        finally:
            app.close()
    by_command, by_service = replies
    assert by_command == by_service
    assert by_command[-1]["status"] == "dispatched" and by_command[-1]["position"]


def test_a_retry_may_list_a_mappings_keys_in_another_order(api: Api) -> None:
    """JSON objects are unordered: the same rate card with its regions listed the other
    way round is the same request, answered from its Idempotency-Key."""
    card = {"carrier": "SF", "name": "SF Express", "default_days": 3,
            "base_fee": {"amount": 800, "currency": "CNY"},
            "per_item_fee": {"amount": 100, "currency": "CNY"}}

    def post(promised_days: dict[str, int]) -> Any:
        # As text: the test client would sort the keys of a `json=` body.
        return api.client.post("/api/v1/carriers", data=json.dumps(
            {**card, "promised_days": promised_days}), content_type="application/json",
            headers=api.headers("admin", **{"Idempotency-Key": "carrier-1"}))

    first, again = post({"east": 1, "south": 2}), post({"south": 2, "east": 1})
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    other = post({"east": 2})
    assert other.status_code == 409
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
