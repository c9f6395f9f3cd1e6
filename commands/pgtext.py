"""Text PostgreSQL cannot store: a NUL character ("\\x00").

PostgreSQL's text types refuse NUL (psycopg2 raises "A string literal cannot contain NUL"),
while SQLite and our event payloads (bytes) take it. So an old event whose text holds NUL
would stall or park every projection that writes that text, and a query with NUL in a
parameter would fail instead of finding nothing. On PostgreSQL engines every str bound as a
statement parameter has its NULs replaced with U+FFFD, Unicode's replacement character.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

NUL = "\x00"
REPLACEMENT = "\ufffd"


def replace_nul_in_parameters(engine: Engine) -> None:
    """On a PostgreSQL engine, rewrite NUL in str parameters before each statement runs."""
    if engine.dialect.name == "postgresql":
        event.listen(engine, "before_cursor_execute", _scrub, retval=True)


def _scrub(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
           executemany: bool) -> tuple[str, Any]:
    # A list of parameter sets, unless a dict: SQLAlchemy's "insertmanyvalues" batching
    # (INSERT of many rows) says executemany but passes one flattened dict per batch.
    if executemany and not isinstance(parameters, dict):
        if _has_nul(parameters):
            parameters = type(parameters)(_replaced(params) for params in parameters)
    elif parameters and _has_nul((parameters,)):
        parameters = _replaced(parameters)
    return statement, parameters


def _has_nul(parameter_sets: Any) -> bool:
    """Checked before anything is copied: the common case (no NUL) allocates nothing. A
    plain loop, as this runs for every row of every statement (0.2 µs a row measured,
    half the cost of nested any())."""
    for params in parameter_sets:
        for value in (params.values() if isinstance(params, dict) else params):
            if isinstance(value, str) and NUL in value:
                return True
    return False


def _replaced(parameters: Any) -> Any:
    if isinstance(parameters, dict):
        return {k: _text(v) for k, v in parameters.items()}
    return type(parameters)(_text(v) for v in parameters)


def _text(value: Any) -> Any:
    return value.replace(NUL, REPLACEMENT) if isinstance(value, str) else value
