"""The faster decoder of stored events gives exactly what the library's decoder gives."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from eventsourcing.persistence import (DatetimeAsISO, DecimalAsStr, JSONTranscoder,
                                       TranscodingNotRegisteredError, UUIDAsHex)
from hypothesis import given
from hypothesis import strategies as st

from commands.codec import FastJSONTranscoder


def transcoder(cls: type[JSONTranscoder]) -> JSONTranscoder:
    made = cls()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        made.register(transcoding)
    return made


LIBRARY, FAST = transcoder(JSONTranscoder), transcoder(FastJSONTranscoder)

typed_values = st.one_of(
    st.uuids(), st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.just(timezone(timedelta(hours=8)))))
plain = st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                  st.floats(allow_nan=False, allow_infinity=False))
documents = st.recursive(
    st.one_of(plain, typed_values),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=30)


@given(st.dictionaries(st.text(max_size=8), documents, max_size=6))
def test_decodes_whatever_the_library_encodes_as_the_library_decodes_it(document):
    data = LIBRARY.encode(document)
    assert FAST.decode(data) == LIBRARY.decode(data) == document


@pytest.mark.parametrize("data", [
    # typed values in arrays, beside those in objects: the whole document is walked
    b'{"at":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"},'
    b'"lines":[{"id":{"_type_":"uuid_hex","_data_":"0123456789abcdef0123456789abcdef"}}]}',
    # "_type_" as a plain key and as a value, an untyped two-member object
    b'{"x":{"_type_":"not a pair"},"y":"_type_","z":{"_type_":1,"other":2}}',
    # a typed value whose data is not a string: nested typed values inside it
    b'{"w":{"_type_":"decimal_str","_data_":{"_type_":"x","_data_":"1"}}}',
    # a key spelled with an escape, an integer beyond 64 bits, NaN: the library's way
    b'{"\\u005ftype_":"decimal_str","_data_":"1.5"}',
    b'{"big":123456789012345678901234567890,"at":'
    b'{"_type_":"decimal_str","_data_":"2.5"}}',
    b'{"nan":NaN}',
    b'[{"_type_":"decimal_str","_data_":"7"}]',
])
def test_documents_off_the_beaten_track(data):
    try:
        expected = LIBRARY.decode(data)
    except Exception as error:
        with pytest.raises(type(error)):
            FAST.decode(data)
    else:
        got = FAST.decode(data)
        assert json.dumps(got, default=repr, sort_keys=True) == \
            json.dumps(expected, default=repr, sort_keys=True)


def test_an_unknown_type_is_refused_as_the_library_refuses_it():
    data = b'{"at":{"_type_":"no_such_type","_data_":"1"}}'
    with pytest.raises(TranscodingNotRegisteredError):
        LIBRARY.decode(data)
    with pytest.raises(TranscodingNotRegisteredError):
        FAST.decode(data)


def test_invalid_bytes_are_refused():
    for data in (b'{"a":', b'\xff\xfe', b'{"a":"\xc3"}'):
        with pytest.raises(ValueError):
            FAST.decode(data)


def test_typed_values_come_back_as_their_objects():
    at = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=timezone.utc)
    document = {"id": UUID(int=7), "amount": Decimal("1.10"), "meta": {"at": at}}
    assert FAST.decode(LIBRARY.encode(document)) == document
    assert type(FAST.decode(LIBRARY.encode(document))["meta"]["at"]) is datetime
