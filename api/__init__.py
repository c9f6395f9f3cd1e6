"""HTTP entry points (Flask + flask-smorest) and the command line."""
from __future__ import annotations

import hashlib

from flask import Flask, request
from flask_limiter import Limiter

from api import (aftersales, catalog, distributors, errors, fulfilment, guards, notifications, ops, orders,
                 promotions, purchasing, stock)
from api import reports
from api import audit
from api import exports
from api import seal
from api import webhooks
from api import access_log
from api import console  # HTML pages at /console: not part of the JSON API
# The console's queues, actions and self-service pages register on its blueprint when
# imported, in the order of its navigation; nothing else imports them.
from api import console_work, console_warehouse, console_network, console_self  # noqa: F401
from api.auth import TokenCache
from api.guards import QuietMemoryStorage, client_address
from api.openapi import FenxiaoApi
from commands import Fenxiao
from commands.settings import Settings
from commands.writer_host import WriterLink
from projections import all_projections
from projections.runner import ProjectionRunner

BLUEPRINTS = (catalog.blp, stock.blp, distributors.blp, orders.blp, fulfilment.blp,
              promotions.blp, purchasing.blp, notifications.blp, ops.blp, aftersales.blp, reports.blp,
              audit.blp, exports.blp, seal.blp, webhooks.blp)


def create_app(settings: Settings | None = None, *, application: Fenxiao | None = None,
               start_worker: bool = False) -> Flask:
    """The WSGI app. With `start_worker`, the projections run in a background thread."""
    settings = settings or Settings.from_env()
    application = application or Fenxiao(settings)
    flask = Flask("fenxiao")
    flask.config.update(
        API_TITLE="Fenxiao", API_VERSION="v1", OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api/v1", OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        PROVIDE_AUTOMATIC_OPTIONS=False,  # OPTIONS is not part of the API: 405 with Allow
    )
    api = FenxiaoApi(flask, spec_kwargs={"info": {"description": "Fenxiao HTTP API"}})
    api.currency = settings.currency
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    api.spec.options["security"] = [{"bearer": []}]
    access_log.register(flask)  # first: every request has its id before anything refuses
    errors.register(flask)  # after Api(), so our envelope replaces its error handler
    guards.register(flask, settings)  # before the limiter: its headers pass our filter
    flask.url_map.converters["distributor"] = distributors.DistributorIdConverter
    api.register_converter(distributors.DistributorIdConverter,
                           lambda _converter: {"not": {"enum": [distributors.RESERVED_ID]}})
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    flask.extensions["fenxiao"] = application
    if application.settings.writer_batch:  # requests' commands decided in order, committed in batches
        application.start_writer(max_batch=application.settings.writer_batch)
    application.writer_link = WriterLink.from_env()  # serve --workers: the shared writer
    console.register(flask)
    if settings.rate_limit:
        limit_rate(flask, settings.rate_limit)
    if settings.token_cache_s:  # bearer tokens found, kept this long (api/auth.py)
        flask.extensions["fenxiao_tokens"] = TokenCache(settings.token_cache_s)
    if start_worker:
        runner = ProjectionRunner(application, all_projections())
        runner.start()
        flask.extensions["fenxiao_runner"] = runner
    return flask


def limit_rate(flask: Flask, limit: str) -> None:
    """One budget per caller across all routes: callers are told apart by their token
    (hashed; never kept in clear), else by address. Counters live in this process.
    Fixed windows: of the strategies, the cheapest per request (measured)."""
    def caller() -> str:
        header = request.headers.get("Authorization")
        if header:
            return hashlib.sha256(header.encode()).hexdigest()
        return client_address()

    limiter = Limiter(caller, app=flask, application_limits=[limit], headers_enabled=True,
                      strategy="fixed-window", storage_uri=f"{QuietMemoryStorage.SCHEME}://")
    # Health is never limited; a request filter skips the limiter's whole bookkeeping,
    # where an exemption of the limit is only decided after most of it.
    limiter.request_filter(lambda: request.path.endswith("/health"))
