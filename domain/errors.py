"""Typed business-rule errors. Each carries a stable snake_case code for clients."""
from __future__ import annotations

import json
from typing import Any

# How each kind of refusal is answered over HTTP. Every other code is a business-rule or
# state conflict (409): the command ran and was refused, so that answer is stored with
# its Idempotency-Key like a success. These three are refusals of the request itself.
STATUS_BY_CODE = {"not_found": 404, "validation_error": 422, "forbidden": 403}
CONFLICT_STATUS = 409


class DomainError(Exception):
    """A command was refused by a business rule; nothing was recorded."""

    code = "conflict"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def status(self) -> int:
        return STATUS_BY_CODE.get(self.code, CONFLICT_STATUS)

    @property
    def is_conflict(self) -> bool:
        """Refused by a rule after the command ran (as opposed to a bad request)."""
        return self.status == CONFLICT_STATUS

    def envelope(self) -> dict[str, Any]:
        """The error body clients get: the one definition, used by the HTTP layer and by
        the idempotency store, so a repeated refusal is answered byte for byte alike."""
        details = self.details
        if self.status == 422 and "field" in details:
            details = {details["field"]: [self.message]}  # field -> messages, like schemas
        body = {"error": {"code": self.code, "message": self.message, "details": details}}
        # Plain JSON values only, as the stored copy will be when it is read back.
        return json.loads(json.dumps(body, default=str))


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


class ProductUnavailable(DomainError):
    """A known product that cannot be sold now (delisted)."""

    code = "product_unavailable"


class DistributorInactive(DomainError):
    code = "distributor_inactive"
