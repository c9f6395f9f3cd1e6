"""Marshmallow schemas: shape only (types, bounds, required fields); unknown fields are
rejected by default."""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from domain.errors import InvalidCommand

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class StrictInt(fields.Integer):
    """An integer, and only an integer: no strings, floats or booleans."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


def StrictBool(**kwargs: Any) -> fields.Boolean:
    return fields.Boolean(truthy={True}, falsy={False}, **kwargs)


def Id(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Regexp(
        ID_PATTERN, error="must be 1-64 characters of A-Z a-z 0-9 _ . : -"), **kwargs)


def Text(max_length: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=max_length), **kwargs)


def Quantity(**kwargs: Any) -> StrictInt:
    return StrictInt(validate=validate.Range(min=1, max=10_000_000), **kwargs)


class MoneySchema(Schema):
    amount = StrictInt(required=True, validate=validate.Range(min=0, max=10**12))
    currency = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}$"))


# Query strings are text, so their integers are parsed (not strict like JSON bodies).
class ReadQuery(Schema):
    min_position = fields.Integer(load_default=None, validate=validate.Range(min=0))


class PageQuery(ReadQuery):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(load_default=None, validate=validate.Length(max=500))


class ErrorBody(Schema):
    code = fields.String()
    message = fields.String()
    details = fields.Dict()


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBody)


def require_currency(money: dict[str, Any], currency: str, field: str) -> int:
    if money["currency"] != currency:
        raise InvalidCommand(f"{field}: currency must be {currency}", field=field)
    return money["amount"]
