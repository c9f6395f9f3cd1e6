"""Shipments, carrier events, rate cards and the choice of a carrier."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.carriers import (CHEAPEST_ON_TIME, FASTEST, REQUESTED, Carriers, NoCarrier,
                             RateCard, choose_carrier, requested_carrier)
from domain.errors import Duplicate, InvalidCommand, InvalidTransition, NotFound
from domain.fulfilment import (CARRIER_STATUSES, RANK, EventIdReused, Shipment, ShipmentPlan,
                               TrackingNumber, plan_shipments, shipment_id_for)
from tests.domain_support import assert_replays, state

AT = datetime(2024, 6, 1, 9, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
SF = RateCard("SF", "SF Express", 1200, 100, default_days=3, promised_days={"ZJ": 1})
ZTO = RateCard("ZTO", "ZTO Express", 600, 50, default_days=4, promised_days={"ZJ": 2})
EMS = RateCard("EMS", "China Post EMS", 800, 0, default_days=5)


def shipment() -> Shipment:
    plan = plan_shipments("O-1", [("TEA", "W-HZ", 2), ("CUP", "W-HZ", 1),
                                  ("TEA", "W-HZ", 1)])[0]
    return Shipment.create(plan, "order", "O-1", "ZJ", AT)


def dispatched() -> Shipment:
    s = shipment()
    s.pick(AT)
    s.pack(AT)
    s.dispatch(choose_carrier([SF, ZTO], "ZJ", s.items, 3), "ZT100", AT)
    return s


# -- the choice of a carrier ----------------------------------------------------------------

def test_cheapest_carrier_that_meets_the_promise() -> None:
    choice = choose_carrier([SF, ZTO, EMS], "ZJ", 4, promised_days=2)
    assert (choice.carrier, choice.quote.fee_minor, choice.quote.days) == ("ZTO", 800, 2)
    assert choice.chosen_by == CHEAPEST_ON_TIME
    assert [(q.carrier, q.fee_minor, q.meets_promise) for q in choice.alternatives] == \
        [("EMS", 800, False), ("SF", 1600, True)]
    # one day promised: only SF makes it in Zhejiang
    assert choose_carrier([SF, ZTO, EMS], "ZJ", 4, promised_days=1).carrier == "SF"


def test_fastest_when_nobody_meets_the_promise_and_ties() -> None:
    choice = choose_carrier([ZTO, EMS, SF], "XJ", 1, promised_days=2)  # default days
    assert (choice.carrier, choice.chosen_by) == ("SF", FASTEST)
    twin = RateCard("AAA", "Twin", 1200, 100, default_days=3)
    assert choose_carrier([SF, twin], "XJ", 1, 2).carrier == "AAA"  # same fee: by code
    cheap_twin = RateCard("ZZZ", "Cheap", 1000, 100, default_days=3)
    assert choose_carrier([SF, cheap_twin], "XJ", 1, 2).carrier == "ZZZ"  # same days
    with pytest.raises(NoCarrier):
        choose_carrier([], "ZJ", 1, 3)


def test_a_requested_carrier_is_quoted_from_its_card() -> None:
    choice = requested_carrier([SF, ZTO], "SF", "ZJ", 2, 3)
    assert (choice.quote.fee_minor, choice.chosen_by, choice.alternatives) == \
        (1400, REQUESTED, ())
    with pytest.raises(InvalidCommand):
        requested_carrier([SF], "YTO", "ZJ", 2, 3)


cards = st.lists(st.builds(RateCard, carrier=st.sampled_from(["A", "B", "C", "D"]),
                           name=st.just("n"), base_fee_minor=st.integers(0, 3000),
                           per_item_fee_minor=st.integers(0, 300),
                           default_days=st.integers(0, 7),
                           promised_days=st.dictionaries(st.sampled_from(["ZJ", "SH"]),
                                                         st.integers(0, 7))),
                 min_size=1, max_size=4, unique_by=lambda c: c.carrier)


@given(cards=cards, region=st.sampled_from(["ZJ", "SH", "XJ"]), items=st.integers(1, 50),
       promise=st.integers(0, 7))
def test_choice_laws(cards, region, items, promise) -> None:
    choice = choose_carrier(cards, region, items, promise)
    quotes = [choice.quote, *choice.alternatives]
    assert sorted(q.carrier for q in quotes) == sorted(c.carrier for c in cards)
    for q in quotes:
        card = next(c for c in cards if c.carrier == q.carrier)
        assert q.fee_minor == card.base_fee_minor + card.per_item_fee_minor * items
        assert q.days == card.promised_days.get(region, card.default_days)
    on_time = [q for q in quotes if q.days <= promise]
    if on_time:
        assert choice.quote.meets_promise
        assert choice.quote.fee_minor == min(q.fee_minor for q in on_time)
    else:
        assert choice.quote.days == min(q.days for q in quotes)


def test_carriers_add_change_and_refuse() -> None:
    carriers = Carriers()
    carriers.add(SF, AT)
    carriers.add(ZTO, AT)
    events = carriers.collect_events()
    with pytest.raises(Duplicate):
        carriers.add(SF, AT)
    with pytest.raises(NotFound):
        carriers.change(EMS, AT)
    with pytest.raises(InvalidCommand):
        carriers.add(RateCard("YTO", "YTO", -1, 0, 3), AT)
    with pytest.raises(InvalidCommand):
        carriers.add(RateCard("YTO", "YTO", 1, 0, 3, {"ZJ": -1}), AT)
    assert carriers.collect_events() == []
    carriers.change(RateCard("SF", "SF Express", 1000, 80, 2, {"ZJ": 1, "SH": 1}), AT)
    assert carriers.card("SF").base_fee_minor == 1000 and carriers.card("YTO") is None
    assert [c.carrier for c in carriers.rate_cards()] == ["SF", "ZTO"]
    assert carriers.rate_cards()[0].promised_days == {"ZJ": 1, "SH": 1}
    assert_replays(carriers, events + carriers.collect_events())


# -- shipments ----------------------------------------------------------------------------

def test_one_shipment_per_warehouse_with_a_deterministic_id() -> None:
    plans = plan_shipments("O-1", [("TEA", "W-SH", 1), ("TEA", "W-HZ", 2),
                                   ("CUP", "W-HZ", 1), ("TEA", "W-HZ", 1)])
    assert plans == [ShipmentPlan(shipment_id_for("O-1", "W-HZ"), "W-HZ",
                                  (("CUP", 1), ("TEA", 3))),
                     ShipmentPlan(shipment_id_for("O-1", "W-SH"), "W-SH", (("TEA", 1),))]
    assert shipment_id_for("O-1", "W-HZ") != shipment_id_for("O-1W", "-HZ")
    assert shipment().items == 4


def test_warehouse_steps_in_order_then_dispatch_records_the_choice() -> None:
    s = shipment()
    events = s.collect_events()
    with pytest.raises(InvalidTransition):
        s.pack(AT)
    s.pick(AT)
    with pytest.raises(InvalidTransition):
        s.dispatch(choose_carrier([SF], "ZJ", 4, 3), "SF1", AT)
    s.pack(AT)
    with pytest.raises(InvalidCommand):
        s.dispatch(choose_carrier([SF], "ZJ", 4, 3), "  ", AT)
    s.dispatch(choose_carrier([SF, ZTO, EMS], "ZJ", s.items, 3), "ZT100", AT)
    events += s.collect_events()
    dispatch = events[-1]
    assert (dispatch.carrier, dispatch.fee_minor, dispatch.days, dispatch.chosen_by) == \
        ("ZTO", 800, 2, CHEAPEST_ON_TIME)
    assert [a["carrier"] for a in dispatch.alternatives] == ["EMS", "SF"]
    assert (s.status, s.carrier, s.tracking_number) == ("dispatched", "ZTO", "ZT100")
    with pytest.raises(InvalidTransition):
        s.cancel("too late", AT)
    assert_replays(s, events)


def test_cancel_before_dispatch() -> None:
    s = shipment()
    s.pick(AT)
    s.cancel("order cancelled", AT)
    assert s.status == "cancelled"
    for command in (lambda: s.pack(AT), lambda: s.cancel("again", AT),
                    lambda: s.record_carrier_event("E1", "in_transit", AT, None, AT)):
        with pytest.raises(InvalidTransition):
            command()


def test_carrier_events_are_idempotent_and_only_move_forward() -> None:
    s = dispatched()
    events = s.collect_events()
    assert s.record_carrier_event("E1", "in_transit", AT + HOUR, "Hangzhou", AT) == "applied"
    assert s.record_carrier_event("E1", "in_transit", AT + HOUR, "Hangzhou", AT) == \
        "duplicate"
    assert s.record_carrier_event("E3", "delivered", AT + 3 * HOUR, None, AT) == "applied"
    assert s.record_carrier_event("E2", "out_for_delivery", AT + 2 * HOUR, None, AT) == "late"
    assert s.record_carrier_event("E4", "exception", AT + 4 * HOUR, None, AT) == "late"
    events += s.collect_events()
    assert [(type(e).__name__, getattr(e, "applied", None)) for e in events[-4:]] == [
        ("CarrierEventRecorded", True), ("CarrierEventRecorded", True),
        ("CarrierEventRecorded", False), ("CarrierEventRecorded", False)]
    assert s.status == "delivered" and s.status_at == AT + 3 * HOUR
    assert_replays(s, events)


def test_an_exception_and_the_recovery_from_it() -> None:
    s = dispatched()
    s.record_carrier_event("E1", "in_transit", AT + 2 * HOUR, None, AT)
    assert s.record_carrier_event("E0", "exception", AT + HOUR, None, AT) == "late"  # older
    assert s.record_carrier_event("E2", "exception", AT + 3 * HOUR, "Wuxi", AT) == "applied"
    assert s.status == "exception"
    assert s.record_carrier_event("E3", "in_transit", AT + 4 * HOUR, None, AT) == "applied"
    assert s.status == "in_transit"


def test_bad_carrier_events_are_refused() -> None:
    with pytest.raises(InvalidTransition):
        shipment().record_carrier_event("E1", "in_transit", AT, None, AT)
    s = dispatched()
    s.collect_events()
    for event_id, status in (("E1", "picked"), ("E1", "lost"), (" ", "in_transit")):
        with pytest.raises(InvalidCommand):
            s.record_carrier_event(event_id, status, AT, None, AT)
    assert s.collect_events() == []


@given(st.lists(st.tuples(st.sampled_from(["E1", "E2", "E3", "E4", "E5", "E6"]),
                          st.sampled_from(CARRIER_STATUSES), st.integers(0, 20)),
                max_size=20))
def test_status_never_goes_back_and_repeats_record_nothing(updates) -> None:
    """A repeat (the same id and status) records nothing; the same id with another
    status is refused (EventIdReused) and records nothing either."""
    s = dispatched()
    events = s.collect_events()
    seen: dict[str, str] = {}
    for event_id, status, hour in updates:
        progress, was = s.progress, s.status
        if seen.get(event_id, status) != status:
            with pytest.raises(EventIdReused):
                s.record_carrier_event(event_id, status, AT + hour * HOUR, None, AT)
            assert s.collect_events() == [] and (s.status, s.progress) == (was, progress)
            continue
        outcome = s.record_carrier_event(event_id, status, AT + hour * HOUR, None, AT)
        new = s.collect_events()
        assert (outcome == "duplicate") == (event_id in seen) == (new == [])
        seen[event_id] = status
        events += new
        assert s.progress >= progress
        if was == "delivered":
            assert s.status == "delivered"
        if outcome == "applied":
            assert s.status == status
        else:  # a repeat or a late event: kept at most, nothing moves
            assert (s.status, s.progress) == (was, progress)
    assert RANK["dispatched"] <= s.progress
    assert_replays(s, events)


def test_tracking_number_index() -> None:
    index = TrackingNumber("ZTO", " ZT100 ", "SH1")
    assert index.id == TrackingNumber.create_id("ZTO", "ZT100") != \
        TrackingNumber.create_id("SF", "ZT100")
    assert (index.tracking_number, index.shipment_id) == ("ZT100", "SH1")


def test_shipment_state_is_plain_data() -> None:
    s = dispatched()
    s.record_carrier_event("E1", "in_transit", AT, None, AT)
    assert state(s)["carrier_events"] == {"E1": "in_transit"}
