"""One access-log line per request, and a request id that follows it.

Every request gets an id: the client's X-Request-Id when it sends a sensible one (so an
integration can follow its own ids through), else a new one. It is answered in the
X-Request-Id header and recorded in the metadata of every event the request's command
causes (commands/app.py CommandContext), so a line of the log, a reply and an event can be
matched. The line is Apache's combined format, the token's name standing as the user,
with the latency and the request id added at the end:

    127.0.0.1 - shop [08/Dec/2026:02:40:00 +0000] "POST /api/v1/orders HTTP/1.1" 201 812
        "-" "curl/8.5" 3.1ms 9f0c…      (one line)

The logger is `fenxiao.access`; `fenxiao serve` writes it to stderr unless
FENXIAO_ACCESS_LOG=0.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from datetime import datetime, timezone

from flask import Flask, Response, g, request

log = logging.getLogger("fenxiao.access")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def register(flask: Flask) -> None:
    flask.before_request(_start)
    flask.after_request(_finish)


def request_id() -> str | None:
    """This request's id (None outside a request that passed `_start`)."""
    return g.get("request_id")


def _start() -> None:
    g.started = time.perf_counter()
    sent = request.headers.get("X-Request-Id", "")
    g.request_id = sent if REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def _finish(response: Response) -> Response:
    rid = g.get("request_id")
    if rid is None:  # refused before `_start` ran (another hook answered first)
        _start()
        rid = g.request_id
    response.headers["X-Request-Id"] = rid
    if log.isEnabledFor(logging.INFO):
        principal = g.get("principal")
        latency_ms = (time.perf_counter() - g.started) * 1000
        log.info('%s - %s [%s] "%s %s %s" %d %s "%s" "%s" %.1fms %s',
                 request.remote_addr or "-", _quoted(principal.name) if principal else "-",
                 datetime.now(timezone.utc).strftime("%d/%b/%Y:%H:%M:%S %z"),
                 request.method, _quoted(request.full_path.rstrip("?")),
                 request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"), response.status_code,
                 response.content_length if response.content_length is not None else "-",
                 _quoted(request.referrer or "-"), _quoted(request.user_agent.string or "-"),
                 latency_ms, rid)
    return response


def _quoted(text: str) -> str:
    """What a client sent, made safe for one log line (no quotes, spaces or controls to
    forge another field or line)."""
    return re.sub(r'[\x00-\x20\x7f-\x9f"\\]', lambda m: f"\\x{ord(m.group()):02x}", text)


def configure_for_serving() -> None:
    """For `fenxiao serve`, in each process that answers: the lines go to stderr, or with
    FENXIAO_ACCESS_LOG=0 are not even formatted."""
    if os.environ.get("FENXIAO_ACCESS_LOG", "1") == "0":
        log.setLevel(logging.WARNING)  # above INFO: `_finish` skips the line entirely
        return
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # one line, ours, whatever the root logger does
