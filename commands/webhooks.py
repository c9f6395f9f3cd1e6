"""Webhook endpoints: register, disable, enable, rotate a secret, ping, replay. Each is an
event of the endpoint's aggregate (domain/webhooks.py); delivery itself is the worker's
(projections/webhook_sender.py), never a request's.

Secrets never reach the idempotency store: a reply names the secret's version, and the
view adds the secret itself from the endpoint (api/webhooks.py), so a repeat with the same
Idempotency-Key shows the same body without the secret ever being kept in clear.
"""
from __future__ import annotations

import base64
import secrets
import socket
from typing import Any, Iterable
from uuid import UUID

from eventsourcing.utils import get_topic
from sqlalchemy import select

from commands.feed import PUBLIC_TYPE_NAMES
from domain.errors import Duplicate
from domain.webhooks import (SECRET_PREFIX, WebhookEndpoint, WebhookUrlRefused,
                             check_addresses, literal_address, url_parts)
from projections.audit_checkpoints import event_log

REGISTERED_TOPIC = get_topic(WebhookEndpoint.WebhookRegistered)
SECRET_BYTES = 24


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an address resolves to itself)."""
    literal = literal_address(host)
    if literal is not None:
        return [str(literal)]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as error:  # gaierror is an OSError
        raise WebhookUrlRefused(f"the URL's host {host} does not resolve: {error}",
                                url=host) from None
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in found))


def check_destination(url: str, allow_private: bool) -> list[str]:
    """The addresses `url` may be called at, resolved now; WebhookUrlRefused if its form
    or any of them is refused."""
    _, host, port = url_parts(url)
    addresses = resolve(host, port)
    check_addresses(url, addresses, allow_private)
    return addresses


class WebhookService:
    """Mixed into the application (commands/__init__.py)."""

    def register_webhook(self, url: str, types: Iterable[str], description: str
                         ) -> dict[str, Any]:
        webhook_id = "wh_" + secrets.token_hex(8)
        endpoint = WebhookEndpoint.register(
            webhook_id, url, list(types), description, new_secret(), PUBLIC_TYPE_NAMES,
            self.settings.webhook_allow_private, self.clock())  # type: ignore[attr-defined]
        if self.exists(endpoint.id):  # type: ignore[attr-defined]
            raise Duplicate(f"webhook {webhook_id} exists", webhook_id=webhook_id)
        return self._webhook_reply(endpoint)

    def webhook(self, webhook_id: str) -> WebhookEndpoint:
        return self.load(WebhookEndpoint.create_id(webhook_id),  # type: ignore[attr-defined]
                         "webhook", webhook_id=webhook_id)

    def disable_webhook(self, webhook_id: str, reason: str, automatic: bool = False
                        ) -> dict[str, Any]:
        endpoint = self.webhook(webhook_id)
        endpoint.disable(reason, automatic, self.clock())  # type: ignore[attr-defined]
        return self._webhook_reply(endpoint)

    def enable_webhook(self, webhook_id: str) -> dict[str, Any]:
        endpoint = self.webhook(webhook_id)
        endpoint.enable(self.clock())  # type: ignore[attr-defined]
        return self._webhook_reply(endpoint)

    def rotate_webhook_secret(self, webhook_id: str, grace_s: int) -> dict[str, Any]:
        endpoint = self.webhook(webhook_id)
        endpoint.rotate_secret(new_secret(), grace_s, self.clock())  # type: ignore[attr-defined]
        return self._webhook_reply(endpoint)

    def ping_webhook(self, webhook_id: str) -> dict[str, Any]:
        endpoint = self.webhook(webhook_id)
        endpoint.ping(self.clock())  # type: ignore[attr-defined]
        return self._webhook_reply(endpoint)

    def replay_webhook(self, webhook_id: str, from_position: int) -> dict[str, Any]:
        endpoint = self.webhook(webhook_id)
        endpoint.replay(from_position, self.last_position(),  # type: ignore[attr-defined]
                        self.clock())  # type: ignore[attr-defined]
        return {**self._webhook_reply(endpoint), "from_position": from_position}

    def _webhook_reply(self, endpoint: WebhookEndpoint) -> dict[str, Any]:
        position = self.record(endpoint)  # type: ignore[attr-defined]
        return {**endpoint.view(), "secret_version": endpoint.secret_version,
                "position": position}

    def webhook_endpoints(self) -> list[tuple[WebhookEndpoint, int]]:
        """Every endpoint ever registered with the position of its registration (where
        its deliveries begin), oldest first: read by the log's topic index (endpoints
        are few), then each loaded."""
        with self.engine.connect() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(select(event_log.c.originator_id, event_log.c.id)
                                .where(event_log.c.topic == REGISTERED_TOPIC)
                                .order_by(event_log.c.id)).all()
        found = []
        for aggregate_id, position in rows:
            endpoint = self.find(UUID(str(aggregate_id)))  # type: ignore[attr-defined]
            if endpoint is not None:
                found.append((endpoint, position))
        return found
