"""Requests the HTTP server itself refuses (a NUL or a bare CR in a header, a malformed
request line, headers too large) never reach Flask: waitress and gunicorn answer them with
their own plain-text or HTML pages. Here they answer in the API's JSON error envelope
instead, with the server's status and reason, so a client parses every error alike."""
from __future__ import annotations

import json
from typing import Any

import gunicorn.util
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask


def envelope(status: int, reason: str, message: str) -> bytes:
    code = "bad_request" if status == 400 else reason.lower().replace(" ", "_")
    return json.dumps({"error": {"code": code, "message": message.strip() or reason,
                                 "details": {}}}).encode()


# -- waitress (one process) -----------------------------------------------------------------

class _JsonErrorTask(ErrorTask):
    def execute(self) -> None:
        error = self.request.error
        body = envelope(error.code, error.reason, f"{error.reason}: {error.body}")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _JsonErrorChannel(HTTPChannel):
    error_task_class = _JsonErrorTask


def waitress_server(app: Any, **options: Any) -> Any:
    """waitress's `create_server`, whose listening sockets answer refusals in JSON."""
    server = create_server(app, **options)
    for candidate in (server, *getattr(server, "map", {}).values()):
        if isinstance(candidate, BaseWSGIServer):
            candidate.channel_class = _JsonErrorChannel
    return server


# -- gunicorn (N processes) -------------------------------------------------------------------

def _write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    body = envelope(status_int, reason, mesg)
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


def use_json_errors_in_gunicorn() -> None:
    """Gunicorn's workers write a refused request's answer with `gunicorn.util.write_error`
    (looked up on the module at each call): ours writes the envelope. Called in every
    API process before it serves."""
    gunicorn.util.write_error = _write_json_error
