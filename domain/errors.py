"""Typed business-rule errors. Each carries a stable snake_case code for clients."""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A command was refused by a business rule; nothing was recorded."""

    code = "conflict"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    code = "not_found"


class Duplicate(DomainError):
    code = "duplicate"


class InvalidTransition(DomainError):
    code = "invalid_transition"


class InsufficientStock(DomainError):
    code = "insufficient_stock"


class InvalidCommand(DomainError):
    """Well-formed input that a rule still refuses (e.g. a transfer to the same warehouse)."""

    code = "validation_error"
