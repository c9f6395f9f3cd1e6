"""Marshmallow schemas: shape only (types, bounds, required fields); unknown fields are
rejected by default.

Every text field refuses control characters, invisible and bidi format characters and
unpaired surrogates (PostgreSQL cannot store NUL, a zero-width or reordering character
lets one name pose as another, and nothing a person types needs them); one-line text
(names, references)
refuses tab and newline too, and required text refuses values that are only whitespace.
The patterns below are both the check and what the OpenAPI document says, so the document
and the server never disagree.
"""
from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from domain.errors import InvalidCommand

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# Unicode's format characters (category Cf) of the Basic Multilingual Plane: invisible
# (zero-width spaces and joiners, the soft hyphen) or reordering what is shown (bidi
# embeddings, overrides and isolates), so a name could look like another or hide text.
_FORMAT = (r"\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
           r"\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb")
# C0 and C1 control characters, DEL and format characters; multi-line text keeps tab,
# newline and CR.
_CONTROL = r"\x00-\x1f\x7f-\x9f" + _FORMAT
_CONTROL_MULTILINE = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f" + _FORMAT
# Whitespace, spelled out so that Python and every JSON Schema validator agree on it.
_SPACE = r" \t\n\r\x0b\x0c\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def text_pattern(multiline: bool = False, blank: bool = False) -> str:
    control = _CONTROL_MULTILINE if multiline else _CONTROL
    if blank:
        return f"^[^{control}]*$"
    return f"^[^{control}]*[^{control}{_SPACE}][^{control}]*$"


class FullMatch(validate.Regexp):
    """A Regexp validator that must match the whole value ("$" alone lets a trailing
    newline through); apispec documents it as the field's `pattern`."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Str(fields.String):
    """A string without unpaired surrogates (JSON can carry them; no database stores them)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if _SURROGATE.search(text):
            raise ValidationError("must not contain unpaired surrogates")
        return text


class StrictInt(fields.Integer):
    """An integer, and only an integer: no strings, booleans or fractions. A JSON number
    written with a zero fraction (1999.0) is the integer JSON Schema says it is."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        if isinstance(value, float):
            if not value.is_integer():
                raise self.make_error("invalid", input=value)
            value = int(value)
        return super()._validated(value)


def StrictBool(**kwargs: Any) -> fields.Boolean:
    return fields.Boolean(truthy={True}, falsy={False}, **kwargs)


def Id(*, also: Any = None, **kwargs: Any) -> Str:
    """An id; `also` adds validators of its own."""
    rules = [FullMatch(ID_PATTERN, error="must be 1-64 characters of A-Z a-z 0-9 _ . : -")]
    return Str(validate=rules + ([also] if also else []), **kwargs)


def Text(max_length: int, *, multiline: bool = False, blank: bool = False,
         **kwargs: Any) -> Str:
    """Text a person wrote: one line unless `multiline`; not empty or blank unless `blank`."""
    what = "text" if multiline else "one line of text"
    rule = (f"must be {what} without control or invisible formatting characters" if blank
            else f"must be {what}, not blank, without control or invisible formatting "
                 "characters")
    return Str(validate=[validate.Length(min=0 if blank else 1, max=max_length),
                         FullMatch(text_pattern(multiline, blank), error=rule)], **kwargs)


def Quantity(**kwargs: Any) -> StrictInt:
    return StrictInt(validate=validate.Range(min=1, max=10_000_000), **kwargs)


class MoneySchema(Schema):
    amount = StrictInt(required=True, validate=validate.Range(min=0, max=10**12))
    # The OpenAPI document narrows this to the store's currency (api/openapi.py).
    currency = Str(required=True, validate=FullMatch(r"^[A-Z]{3}$"))


class PositiveMoneySchema(MoneySchema):
    amount = StrictInt(required=True, validate=validate.Range(min=1, max=10**12))


class NoBody(Schema):
    """For commands that take no fields: an empty object (or no body) and nothing else."""


# Query strings are text, so their integers are parsed (not strict like JSON bodies).
class ReadQuery(Schema):
    min_position = fields.Integer(load_default=None,
                                  validate=validate.Range(min=0, max=2**63 - 1))


class PageQuery(ReadQuery):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = Str(load_default=None, validate=[validate.Length(min=1, max=500), FullMatch(
        r"^[A-Za-z0-9_=-]+$", error="not a cursor this API issued")])


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBody, required=True)


def require_currency(money: dict[str, Any], currency: str, field: str) -> int:
    if money["currency"] != currency:
        raise InvalidCommand(f"{field}: currency must be {currency}", field=field)
    return money["amount"]
