"""The base of every command, and the one immutable mapping commands hold."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True)
class Command:
    """The base of every command. A subclass lists its inputs as fields and implements
    `handle`: load, decide, save through the application's services."""

    status: ClassVar[int] = 200  # the HTTP status of its success (201 for a creation)

    def handle(self, app: Any) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} has no handler")

    @property
    def name(self) -> str:
        return type(self).__name__

    def fingerprint(self) -> str:
        """The same command with the same inputs always has the same fingerprint: what an
        Idempotency-Key is checked against ("the same request again")."""
        canonical = json.dumps([self.name, _plain(self)], sort_keys=True,
                               separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


class FrozenMap(Mapping[str, Any]):
    """A dict's contents as a value: immutable, hashable, and equal to any mapping with the
    same items, whatever their order (as dicts are). It keeps the order it was given, so
    `dict(frozen)` is the very dict the service took when the view passed its body."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):  # a dict or a FrozenMap: keys sorted, so order is moot
        return {str(key): _plain(item) for key, item in value.items()}
    return value
