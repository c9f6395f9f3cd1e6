"""The OpenAPI document, made exact: our error envelope, every status an operation can
answer, the Idempotency-Key header, path parameter patterns and the store's currency.

flask-smorest documents what the decorators say (bodies, queries, success responses); what
every operation shares (auth, errors, headers) is added here in one place, from the same
rules the server applies, so a fuzzer reading the document finds no difference.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any

from flask import Response, current_app
from flask_smorest import Api

from api.schemas import ID_PATTERN, ErrorSchema

ERROR_REF = {"$ref": "#/components/schemas/Error"}
POSITION_HEADER = {"description": "The log position the data reflects.",
                   "schema": {"type": "integer"}}
RETRY_AFTER_HEADER = {"description": "Seconds to wait before retrying.",
                      "schema": {"type": "integer"}}

ERRORS = {
    400: "The body is not valid JSON (or is nested too deeply).",
    401: "No token, or a token that is not valid.",
    403: "The token's role may not do this.",
    404: "The object does not exist (or belongs to another distributor).",
    405: "The path names another resource of the API, which does not take this method.",
    409: "Refused by a business rule, or the Idempotency-Key was used with another body.",
    413: "The body is too large.",
    415: "The body is not JSON.",
    422: "The request is not valid; details name each field.",
    429: "Too many requests (or failed sign-ins) from this caller.",
    503: "A read model has not reached min_position yet, or the store cannot be used "
         "(FENXIAO_CIPHER_KEY does not fit it).",
}
COMMON = (401, 403, 404, 422, 429, 503)
COMMAND = (400, 409, 413, 415)

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "A repeat with the same key and body returns the original reply and "
                   "records nothing; the same key with another body is 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


class FenxiaoApi(Api):
    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None  # every status is declared, none by default
    currency = "CNY"

    def roles(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """(OpenAPI path, method) -> the roles `requires` lets in."""
        found = {}
        for rule in current_app.url_map.iter_rules():
            roles = getattr(current_app.view_functions[rule.endpoint], "roles", None)
            if roles:
                path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
                for method in rule.methods or ():
                    found[(path, method.lower())] = roles
        return found

    def _openapi_json(self) -> Response:
        cache = current_app.extensions.setdefault("fenxiao_openapi", {})
        if "document" not in cache:
            cache["document"] = json.dumps(self.document(), indent=2)
        return current_app.response_class(cache["document"], mimetype="application/json")

    def document(self) -> dict[str, Any]:
        return complete(copy.deepcopy(self.spec.to_dict()), self.currency, self.roles())


def complete(doc: dict[str, Any], currency: str,
             roles: dict[tuple[str, str], tuple[str, ...]]) -> dict[str, Any]:
    schemas = doc["components"]["schemas"]
    for name, schema in schemas.items():
        if name.endswith("Money"):  # MoneySchema and its kin: the store's currency only
            schema["properties"]["currency"] = {"type": "string", "enum": [currency]}
    for name, groups in EXCLUSIVE_GROUPS.items():
        schemas[name]["oneOf"] = _one_of(groups)
    for name, keywords in CONDITIONS.items():
        schemas[name].update(keywords)
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if method not in ("get", "post"):
                continue
            if path.endswith("/health"):
                operation["security"] = []  # monitors poll it without a token
                continue
            _complete_operation(method, operation, templated="{" in path)
            if allowed := roles.get((path, method)):
                operation["x-roles"] = list(allowed)
                operation["description"] = (operation.get("description", "")
                                            + f"\n\nRoles: {', '.join(allowed)}.").strip()
        for parameter in operations.get("parameters", []):
            if parameter["in"] == "path":
                parameter["schema"].update(type="string", pattern=ID_PATTERN, maxLength=64)
    return doc


def _complete_operation(method: str, operation: dict[str, Any], templated: bool) -> None:
    responses = operation.setdefault("responses", {})
    statuses = COMMON + (COMMAND if method == "post" else ())
    if templated:  # a parameter's value may spell another route (/distributors/applications)
        statuses += (405,)
    for status in statuses:
        response: dict[str, Any] = {"description": ERRORS[status],
                                    "content": {"application/json": {"schema": ERROR_REF}}}
        if status in (429, 503):
            response["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
        responses[str(status)] = response
    if method == "post":
        operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
    else:
        for status, response in responses.items():
            if status.startswith("2"):
                response.setdefault("headers", {})["X-Fenxiao-Position"] = POSITION_HEADER


# Bodies whose fields come in exclusive groups (marshmallow checks them in a
# validates_schema; JSON Schema says it with oneOf): schema name -> the groups.
EXCLUSIVE_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {}


def exclusive_groups(schema_name: str, *groups: tuple[str, ...]) -> None:
    """Document that a body takes every field of exactly one of `groups`."""
    EXCLUSIVE_GROUPS[schema_name] = groups


# Bodies where one field's value decides whether another is required (JSON Schema's
# if/then/else; marshmallow checks the same in a validates_schema): schema -> keywords.
CONDITIONS: dict[str, dict[str, Any]] = {}


def required_when(schema_name: str, field: str, value: str, dependent: str) -> None:
    """Document that `dependent` is required (not null) when `field` is `value`, and absent
    or null otherwise."""
    CONDITIONS[schema_name] = {
        "if": {"properties": {field: {"const": value}}, "required": [field]},
        "then": {"required": [dependent], "properties": {dependent: {"not": {"type": "null"}}}},
        "else": {"properties": {dependent: {"type": "null"}}},
    }


def _one_of(groups: tuple[tuple[str, ...], ...]) -> list[dict[str, Any]]:
    branches = []
    for group in groups:
        others = [name for other in groups if other is not group for name in other]
        branches.append({"required": list(group),
                         "not": {"anyOf": [{"required": [name]} for name in others]}})
    return branches
