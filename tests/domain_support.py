"""Helpers for domain tests: replay events the way the store would give them back."""
from __future__ import annotations

import copy
from typing import Any

from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.persistence import (DatetimeAsISO, DecimalAsStr, JSONTranscoder, Mapper,
                                       UUIDAsHex)


def _mapper() -> Mapper:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


MAPPER = _mapper()


def through_store(events: list) -> list:
    """The events as they come back from the JSON event store (tuples become lists...)."""
    return [MAPPER.to_domain_event(MAPPER.to_stored_event(e)) for e in events]


def replayed(events: list) -> Any:
    aggregate = None
    for domain_event in through_store(events):
        aggregate = domain_event.mutate(aggregate)
    return aggregate


def state(aggregate: Aggregate) -> dict[str, Any]:
    """An aggregate's own state (not the library's bookkeeping), deep-copied."""
    return copy.deepcopy({k: v for k, v in vars(aggregate).items() if not k.startswith("_")})


def assert_replays(aggregate: Aggregate, events: list) -> None:
    """Replaying every event through the store gives the live aggregate's state, and so
    does a snapshot of it taken through the store (the state is plain JSON data)."""
    assert state(replayed(events)) == state(aggregate)
    (snapshot,) = through_store([Snapshot.take(aggregate)])
    assert state(snapshot.mutate(None)) == state(aggregate)
