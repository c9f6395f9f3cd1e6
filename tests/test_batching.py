"""Set-based writes keep every text as it was: COPY's escapes (PostgreSQL) and the plain
INSERT (SQLite) round-trip any string; PostgreSQL's text cannot hold NUL, written there as
U+FFFD (as commands write it)."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, Text, select

from projections.batching import insert

_metadata = MetaData()
texts = Table("test_batching_texts", _metadata,
              Column("n", Integer, primary_key=True), Column("value", Text))


def round_trip(app, values):
    """`values` written by the set-based insert and read back; and what should come back."""
    with app.engine.begin() as conn:
        texts.drop(conn, checkfirst=True)
        texts.create(conn)
        try:
            insert(conn, texts, [{"n": n, "value": v} for n, v in enumerate(values)])
            stored = conn.execute(select(texts.c.value).order_by(texts.c.n)).scalars().all()
        finally:
            texts.drop(conn)
    if app.engine.dialect.name == "postgresql":
        return stored, [v.replace("\x00", "\ufffd") for v in values]
    return stored, values


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.text(), min_size=1, max_size=20))
def test_any_text_round_trips(app, values):
    stored, expected = round_trip(app, values)
    assert stored == expected


def test_the_characters_copy_escapes(app):
    stored, expected = round_trip(app, [
        "a\tb", "line\nbreak", "cr\rhere", "back\\slash", "\\N", "nul\x00",
        "\u2028separator", "\x1bescape", "中文 memo", ""])
    assert stored == expected
