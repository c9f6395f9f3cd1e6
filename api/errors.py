"""Every error leaves the API in one envelope, mapped in one place:
{"error": {"code": "snake_case", "message": "human sentence", "details": {}}}."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from commands.app import StoreMismatch
from commands.writer_host import WriterUnavailable
from domain.errors import DomainError

log = logging.getLogger("fenxiao.api")

HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited",
    503: "projection_lagging",
}


class ApiError(Exception):
    """An error raised by the API layer itself (auth, lagging projections, bad headers)."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def envelope(status: int, code: str, message: str, details: Any = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    details: Any = {}
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if isinstance(messages, dict):
        # webargs nests messages by location; flatten to field -> messages
        for location_messages in messages.values():
            if isinstance(location_messages, dict):
                details.update(location_messages)
            else:
                details.setdefault("_body", []).extend(location_messages)
    message = {
        400: "the request body is not valid JSON",
        413: "the request body is too large",
        422: "the request is not valid; see details",
        429: f"too many requests; the limit is {error.description}",
    }.get(status, error.description or error.name)
    response = envelope(status, HTTP_CODES.get(status, "http_error"), message, details)
    for name, value in error.get_headers():
        if name.lower() != "content-type":  # e.g. Allow on 405
            response.headers[name] = value
    return response


def handle_domain_error(error: DomainError) -> Response:
    # The status and body are the error's own (domain/errors.py): the idempotency store
    # keeps the same body for a refusal, so a repeat is answered identically.
    response = jsonify(error.envelope())
    response.status_code = error.status
    return response


def handle_api_error(error: ApiError) -> Response:
    details = dict(error.details)
    retry_after_s = details.pop("retry_after_s", None)
    response = envelope(error.status, error.code, error.message, details)
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


def handle_unavailable(error: StoreMismatch | WriterUnavailable) -> Response:
    return envelope(503, error.code, str(error))


def handle_unexpected(error: Exception) -> Response:
    log.exception("unhandled error")
    return envelope(500, "internal_error", "an internal error occurred; nothing was recorded")


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(StoreMismatch, handle_unavailable)
    app.register_error_handler(WriterUnavailable, handle_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
