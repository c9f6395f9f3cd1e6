"""Set-based writes for projections: a batch of events is folded, in memory, into the rows
it creates and changes, then written with a few statements whatever the batch's size.

A statement costs far more than the work of one event (building, compiling and sending it:
the ledger, applying a few statements per event, rebuilt a log of a million events at
~600 of its events/s on PostgreSQL), so a busy
projection reads the rows its batch touches in one SELECT, applies its events to them in
log order in Python, and writes them back: the existing rows it changed are deleted, then
those and the rows it created are inserted. The result is the one applying the events one
statement at a time gives, and so are the failures that matter: a row created twice, or
an event naming a row that does not exist where a handler would have failed, makes the
batch fail; the runner then applies its events one at a time and parks the culprit.
"""
from __future__ import annotations

import io
from datetime import date, datetime
from typing import Any, Callable, ClassVar, Iterable, Sequence

from sqlalchemy import Table, and_, delete, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, NoResultFound

from projections.base import Projection

_CHUNK = 500  # keys per SELECT ... IN: well below every driver's parameter limit


class Rows:
    """The rows of `table` a batch touches, found by `key` (a unique column, or several)
    or by one of the unique columns `also` (which no event changes)."""

    def __init__(self, table: Table, key: str | Sequence[str], also: Sequence[str] = ()
                 ) -> None:
        self.table = table
        self.key = (key,) if isinstance(key, str) else tuple(key)
        self._rows: dict[Any, dict[str, Any]] = {}  # what the batch knows, by key
        self._by: dict[str, dict[Any, dict[str, Any]]] = {name: {} for name in also}
        self._looked_up: dict[str | None, set[Any]] = {None: set(), **{n: set() for n in also}}
        self._new: list[dict[str, Any]] = []
        self._new_ids: set[int] = set()
        self._changed: dict[Any, dict[str, Any]] = {}  # existing rows changed, by key

    def _key_of(self, row: dict[str, Any]) -> Any:
        return row[self.key[0]] if len(self.key) == 1 else tuple(row[k] for k in self.key)

    def _known(self, by: str | None) -> dict[Any, dict[str, Any]]:
        return self._rows if by is None else self._by[by]

    def _remember(self, row: dict[str, Any]) -> None:
        self._rows.setdefault(self._key_of(row), row)
        for name, index in self._by.items():
            index.setdefault(row[name], row)

    def load(self, conn: Connection, keys: Iterable[Any], by: str | None = None) -> None:
        """Read the existing rows of `keys` (values of `by`, default the key) not known
        yet, a few hundred per query: call it once with every key the batch asks for."""
        known, looked_up = self._known(by), self._looked_up[by]
        wanted = [k for k in set(keys) if k not in known and k not in looked_up]
        looked_up.update(wanted)
        names = (by,) if by is not None else self.key
        for start in range(0, len(wanted), _CHUNK):
            for row in conn.execute(select(self.table).where(
                    _matching(self.table, names, wanted[start:start + _CHUNK]))):
                self._remember(dict(row._mapping))

    def get(self, conn: Connection, key: Any, by: str | None = None
            ) -> dict[str, Any] | None:
        """The row as the events so far left it; None if there is none."""
        if key not in self._known(by) and key not in self._looked_up[by]:
            self.load(conn, [key], by)
        return self._known(by).get(key)

    def one(self, conn: Connection, key: Any, by: str | None = None) -> dict[str, Any]:
        """The row, which must exist (as `.one()` would insist)."""
        row = self.get(conn, key, by)
        if row is None:
            raise NoResultFound(f"no row of {self.table.name} with "
                                f"{by or self.key} = {key!r}")
        return row

    def insert(self, row: dict[str, Any]) -> None:
        """A new row. Its key may exist already (in the table or earlier in the batch):
        the INSERT then fails, as the handler's own INSERT would have."""
        self._new.append(row)
        self._new_ids.add(id(row))
        self._remember(row)

    def update(self, conn: Connection, key: Any, by: str | None = None, **values: Any
               ) -> dict[str, Any] | None:
        """Set columns of the row (an UPDATE of a missing row changes nothing: None)."""
        row = self.get(conn, key, by)
        if row is not None and values:
            row.update(values)
            self._touched(row)
        return row

    def add(self, conn: Connection, key: Any, by: str | None = None, **deltas: int
            ) -> dict[str, Any] | None:
        """Add to columns of the row (`column = column + delta`)."""
        row = self.get(conn, key, by)
        if row is not None and deltas:
            for name, delta in deltas.items():
                row[name] += delta
            self._touched(row)
        return row

    def _touched(self, row: dict[str, Any]) -> None:
        if id(row) not in self._new_ids:
            self._changed[self._key_of(row)] = row

    def increment(self, conn: Connection, sums: dict[Any, dict[str, int]]) -> None:
        """Add each key's sums to its row, or create the row with them (what an INSERT
        ... ON CONFLICT DO UPDATE SET column = column + excluded.column per event
        gives): one query for all the keys."""
        self.load(conn, sums)
        for key, deltas in sums.items():
            if self.add(conn, key, **deltas) is None:
                self.insert({**dict(zip(self.key, key if len(self.key) > 1 else (key,))),
                             **deltas})

    def write(self, conn: Connection) -> None:
        """The batch's rows as they stand now: the changed ones deleted, then every changed
        and new row inserted, a few statements for the whole batch. (An upsert of many
        rows would be one round trip per row on PostgreSQL: SQLAlchemy sends INSERT ... ON
        CONFLICT DO UPDATE as an executemany, a plain INSERT as a multi-row VALUES.)"""
        rewrite(conn, self.table, list(self._changed.values()), self._new)


def rewrite(conn: Connection, table: Table, changed: Sequence[dict[str, Any]],
            new: Sequence[dict[str, Any]]) -> None:
    """Replace the existing rows `changed` (found by their primary key) and add the rows
    `new`: a DELETE per few hundred keys, then one INSERT (COPY) of them all."""
    primary = [c.name for c in table.primary_key.columns]
    keys = [row[primary[0]] if len(primary) == 1 else tuple(row[n] for n in primary)
            for row in changed]
    for start in range(0, len(keys), _CHUNK):
        conn.execute(delete(table).where(
            _matching(table, primary, keys[start:start + _CHUNK])))
    insert(conn, table, [*changed, *new])


def insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (a column a row lacks is NULL, as a handler's INSERT would leave it:
    no column of a read model has a default), the values converted by the columns' types
    as SQLAlchemy converts them but without its per-row work: on PostgreSQL with COPY
    (a third of the time of a multi-row INSERT, measured), on SQLite an executemany. The
    table is named as SQLAlchemy names it (a scratch build's temporary table of that name
    comes first: projections/scratch.py)."""
    if not rows:
        return
    dialect = conn.dialect
    names = sorted({name for row in rows for name in row})
    quote = dialect.identifier_preparer.quote
    schema = f"{dialect.identifier_preparer.quote_schema(table.schema)}." if table.schema \
        else ""
    into = f"{schema}{quote(table.name)} ({', '.join(quote(name) for name in names)})"
    if dialect.name == "postgresql":
        try:
            data = _copy_data(table, names, rows, dialect)
        except TypeError:  # a value COPY has no text for here: SQLAlchemy's way then
            conn.execute(table.insert(), [{name: row.get(name) for name in names}
                                          for row in rows])
            return
        _copy(conn, f"COPY {into} FROM STDIN", data)
    else:
        converts = [(name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
                    for name in names]
        values = [tuple(row.get(name) if convert is None else convert(row.get(name))
                        for name, convert in converts) for row in rows]
        conn.exec_driver_sql(f"INSERT INTO {into} VALUES ({', '.join(['?'] * len(names))})",
                             values)


def _copy_data(table: Table, names: Sequence[str], rows: Sequence[dict[str, Any]],
               dialect: Any) -> str:
    """The rows in COPY's text format, a line each, built column by column, each
    column's values through one function chosen for its type beforehand (a journal line:
    ~6 µs the generic way, testing each value's type, ~2.5 µs so)."""
    columns = [list(map(_column_text(table.c[name], dialect),
                        [row.get(name) for row in rows])) for name in names]
    return "".join(line + "\n" for line in map("\t".join, zip(*columns)))


def _column_text(column: Any, dialect: Any) -> Callable[[Any], str]:
    convert = column.type.dialect_impl(dialect).bind_processor(dialect)
    if convert is not None:
        return lambda value: _copy_text(convert(value))
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return _copy_text
    if python_type is datetime and column.type.timezone:  # equal instants: one value
        return _time_text()
    return _TEXT_OF.get(python_type, _copy_text)


def _copy(conn: Connection, sql: str, data: str) -> None:
    """COPY rows given in PostgreSQL's text format. A driver error is raised as
    SQLAlchemy's (IntegrityError, OperationalError, ...), as a statement's would be, so
    the runner tells an event's fault from the database's."""
    dbapi_connection = conn.connection.dbapi_connection
    cursor = dbapi_connection.cursor()
    try:
        cursor.copy_expert(sql, io.StringIO(data))
    except conn.dialect.loaded_dbapi.Error as error:
        invalidated = conn.dialect.is_disconnect(error, dbapi_connection, cursor)
        if invalidated:
            conn.invalidate(error)
        raise DBAPIError.instance(sql, None, error, conn.dialect.loaded_dbapi.Error,
                                  connection_invalidated=invalidated) from error
    finally:
        cursor.close()


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
                               "\x00": "\ufffd"})  # NUL as commands/pgtext.py has it


def _int_text(value: Any) -> str:
    return str(value) if type(value) is int else _copy_text(value)


def _str_text(value: Any) -> str:
    if type(value) is not str:
        return _copy_text(value)
    # translate() looks every character up in a dict: ten times the checks for the few
    # characters it would change (a backslash, or one not printable: tab, newlines, NUL),
    # which most values have none of.
    return value.translate(_COPY_ESCAPES) if "\\" in value or not value.isprintable() \
        else value


def _time_text() -> Callable[[Any], str]:
    """A column's times, each written once per batch: the events of one save share
    their time, and isoformat() costs more than looking it up."""
    seen: dict[datetime, str] = {}

    def text(value: Any) -> str:
        if type(value) is not datetime:
            return _copy_text(value)
        found = seen.get(value)
        if found is None:
            found = seen[value] = value.isoformat()
        return found
    return text


# Fast paths by a column's Python type; a value of another type takes the generic way.
_TEXT_OF: dict[type, Callable[[Any], str]] = {int: _int_text, str: _str_text}


def _copy_text(value: Any) -> str:
    """A value as COPY's text format writes it, for the types read models hold."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (int, datetime, date)):
        return value.isoformat() if isinstance(value, date) else str(value)
    raise TypeError(f"no COPY text for a {type(value).__name__}")


def _matching(table: Table, names: Sequence[str], keys: Sequence[Any]) -> Any:
    """WHERE the row's `names` columns are one of `keys` (values, or tuples of values).
    Tuples are grouped by all but their most varied column (one group as a rule: a
    currency, a coupon), each group `a = .. AND b IN (...)`: PostgreSQL looks that up by
    index or hash, where a list of tuples would be compared with every row."""
    if len(names) == 1:
        return table.c[names[0]].in_(keys)
    at = max(range(len(names)), key=lambda i: len({k[i] for k in keys}))
    others = [i for i in range(len(names)) if i != at]
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for key in keys:
        groups.setdefault(tuple(key[i] for i in others), []).append(key[at])
    return or_(*(and_(*(table.c[names[i]] == value for i, value in zip(others, group)),
                      table.c[names[at]].in_(values))
                 for group, values in groups.items()))


class FoldingProjection(Projection):
    """A projection that folds each batch itself: `batch_class(conn, events)` reads the
    rows the batch touches, `fold[type(event)](batch, event)` applies each event to them in
    log order, and `batch.write()` writes them back."""

    handlers: ClassVar[dict[type, Any]] = {}  # none: apply_batch folds the batch itself
    fold: ClassVar[dict[type, Callable[[Any, Any], None]]]
    batch_class: ClassVar[Callable[[Connection, Sequence[Any]], Any]]

    @classmethod
    def event_types(cls) -> tuple[type, ...]:
        return tuple(cls.fold)

    def apply_batch(self, conn: Connection, events: Sequence[Any]) -> None:
        batch = self.batch_class(conn, events)
        for e in events:
            self.fold[type(e)](batch, e)
        batch.write()
