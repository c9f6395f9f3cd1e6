"""Deterministic aggregate ids for natural keys, so writers collide instead of making twins."""
from __future__ import annotations

from uuid import UUID, uuid5

NAMESPACE = UUID("6f1d6c1e-3a52-4f0b-9a9e-5d3b8a1f0c11")


def natural_id(kind: str, *parts: str) -> UUID:
    return uuid5(NAMESPACE, "\x1f".join((kind, *parts)))
