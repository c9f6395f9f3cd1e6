"""Checks on what callers pass in that no valid request can fail: a failure is a
programming error upstream. Raised explicitly, unlike `assert`, so `python -O` cannot
switch them off; an AssertionError too, since that is what they are."""
from __future__ import annotations

from domain.errors import DomainError


class InconsistentInput(DomainError, AssertionError):
    code = "inconsistent_input"


def ensure(condition: bool, message: str) -> None:
    if not condition:
        raise InconsistentInput(message)
