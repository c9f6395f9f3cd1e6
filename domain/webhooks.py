"""Webhook endpoints: where integrations want the public events pushed, and the rules of
registering, disabling, enabling and rotating their signing secrets.

Secrets are Standard Webhooks secrets, `whsec_<base64 of 24 random bytes>`. They are kept
in the endpoint's events, so they are encrypted at rest exactly as personal data is (the
store's cipher, FENXIAO_CIPHER_KEY); the audit history never shows them (commands/audit.py
redacts every `secret`). During a rotation's grace period the previous secret signs too.

Whether a URL's host may be called is decided here from addresses the application resolved
(the domain does no I/O): only http(s), no credentials in the URL, and no private,
loopback, link-local or otherwise non-global address unless private addresses are allowed.
"""
from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, InvalidCommand, InvalidTransition
from domain.ids import natural_id

SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2000
MAX_GRACE_S = 7 * 24 * 3600  # an old secret never signs for longer than a week
DEFAULT_GRACE_S = 24 * 3600
ENABLED, DISABLED = "enabled", "disabled"


class WebhookUrlRefused(DomainError):
    """A well-formed URL that may not be called: its scheme, its form, or where its host
    points (409: refused by the rule, like any business rule)."""

    code = "webhook_url_refused"


class BeyondLogHead(DomainError):
    """A position the log has not reached: there is nothing there to send yet."""

    code = "position_beyond_log_head"


def url_parts(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL an endpoint may have; WebhookUrlRefused if not."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlRefused(f"the URL is longer than {MAX_URL_LENGTH} characters",
                                url=url[:100])
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WebhookUrlRefused(f"not a URL: {error}", url=url) from None
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlRefused("only http and https URLs can receive webhooks", url=url)
    if not parts.hostname:
        raise WebhookUrlRefused("the URL names no host", url=url)
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("credentials in the URL are refused (they would be kept "
                                "and shown in clear); sign with the secret instead", url=url)
    if parts.fragment:
        raise WebhookUrlRefused("a URL with a #fragment cannot be called", url=url)
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def address_refusal(address: str, allow_private: bool) -> str | None:
    """Why `address` may not be called (None: it may). Multicast and the unspecified
    address never; loopback, private, link-local (cloud metadata: 169.254.169.254), shared
    and reserved ranges only with private addresses allowed."""
    ip = literal_address(address)
    if ip is None:
        return f"{address} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_multicast or ip.is_unspecified:
        return f"{ip} is a multicast or unspecified address"
    if not ip.is_global and not allow_private:
        kind = ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local
                else "private or reserved")
        return (f"{ip} is a {kind} address; set FENXIAO_WEBHOOK_ALLOW_PRIVATE=1 to allow "
                "such addresses")
    return None


def check_addresses(url: str, addresses: Iterable[str], allow_private: bool) -> None:
    """Every address the URL's host resolved to must be callable (one refused address is
    enough to refuse: a resolver may hand out any of them)."""
    found = list(addresses)
    if not found:
        raise WebhookUrlRefused("the URL's host resolves to no address", url=url)
    for address in found:
        why = address_refusal(address, allow_private)
        if why is not None:
            raise WebhookUrlRefused(f"the URL's host is refused: {why}", url=url,
                                    address=address)


def check_secret(secret: str) -> None:
    assert secret.startswith(SECRET_PREFIX) and len(secret) > len(SECRET_PREFIX), \
        "a secret is whsec_ and base64"


class WebhookEndpoint(Aggregate):
    @staticmethod
    def create_id(webhook_id: str) -> UUID:
        return natural_id("webhook", webhook_id)

    @classmethod
    def register(cls, webhook_id: str, url: str, types: Sequence[str], description: str,
                 secret: str, known_types: Iterable[str], allow_private: bool,
                 at: datetime) -> "WebhookEndpoint":
        """A new enabled endpoint. The URL must be callable; a host given as an address
        is checked here; a name is checked by the application after resolving it (and
        again at every delivery)."""
        _, host, _ = url_parts(url)
        if literal_address(host) is not None:
            check_addresses(url, [host], allow_private)
        known = set(known_types)
        if not types:
            raise InvalidCommand("name at least one event type", field="types")
        unknown = sorted(set(types) - known)
        if unknown:
            raise InvalidCommand(f"unknown event types: {', '.join(unknown)}", field="types")
        if len(set(types)) != len(types):
            raise InvalidCommand("an event type is named twice", field="types")
        check_secret(secret)
        return cls(webhook_id=webhook_id, url=url, types=list(types),
                   description=description, secret=secret, at=at)

    @event("WebhookRegistered")
    def __init__(self, webhook_id: str, url: str, types: list[str], description: str,
                 secret: str, at: datetime) -> None:
        self.webhook_id = webhook_id
        self.url = url
        self.types = list(types)
        self.description = description
        self.status = ENABLED
        self.secret = secret
        self.secret_version = 1  # the reply of a registration or rotation names it
        self.previous_secret: str | None = None
        self.previous_expires_at: datetime | None = None
        self.registered_at = at
        self.disabled_reason: str | None = None
        self.automatically_disabled = False
        self.enables = 0  # times enabled again: the sender starts afresh after each
        self.replays = 0  # replays asked for: the sender rewinds once for each
        self.replay_from = 0

    def secrets_at(self, now: datetime) -> list[str]:
        """The secrets that sign at `now`: the current one, and the previous one during a
        rotation's grace period."""
        if self.previous_secret and self.previous_expires_at and now < self.previous_expires_at:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def disable(self, reason: str, automatic: bool, at: datetime) -> None:
        if self.status == DISABLED:
            raise InvalidTransition(f"webhook {self.webhook_id} is already disabled",
                                    status=self.status)
        if not reason.strip():
            raise InvalidCommand("a reason is required", field="reason")
        self._disabled(reason=reason, automatic=automatic, at=at)

    @event("WebhookDisabled")
    def _disabled(self, reason: str, automatic: bool, at: datetime) -> None:
        self.status = DISABLED
        self.disabled_reason = reason
        self.automatically_disabled = automatic

    def enable(self, at: datetime) -> None:
        if self.status == ENABLED:
            raise InvalidTransition(f"webhook {self.webhook_id} is already enabled",
                                    status=self.status)
        self._enabled(at=at)

    @event("WebhookEnabled")
    def _enabled(self, at: datetime) -> None:
        self.status = ENABLED
        self.disabled_reason = None
        self.automatically_disabled = False
        self.enables += 1

    def rotate_secret(self, secret: str, grace_s: int, at: datetime) -> None:
        """A new secret; the current one keeps signing for `grace_s` seconds (0: it stops
        at once). Allowed on a disabled endpoint too: a leaked secret is replaced first."""
        if not 0 <= grace_s <= MAX_GRACE_S:
            raise InvalidCommand(f"grace_s must be within 0..{MAX_GRACE_S}", field="grace_s")
        check_secret(secret)
        if secret == self.secret:
            raise InvalidCommand("the new secret must differ from the current one",
                                 field="secret")
        self._rotated(secret=secret, previous_expires_at=at + timedelta(seconds=grace_s),
                      at=at)

    @event("WebhookSecretRotated")
    def _rotated(self, secret: str, previous_expires_at: datetime, at: datetime) -> None:
        self.previous_secret = self.secret
        self.previous_expires_at = previous_expires_at
        self.secret = secret
        self.secret_version += 1

    def ping(self, at: datetime) -> None:
        """A test delivery (`webhook.ping`), sent in log order like any event: only to an
        enabled endpoint, which is the only one that would send it."""
        if self.status != ENABLED:
            raise InvalidTransition(f"webhook {self.webhook_id} is disabled: enable it "
                                    "before pinging it", status=self.status)
        self._pinged(at=at)

    @event("WebhookPinged")
    def _pinged(self, at: datetime) -> None:
        pass

    def replay(self, from_position: int, head: int, at: datetime) -> None:
        """Send again every event after `from_position` (at most the log head, whose
        events all exist)."""
        if from_position < 0:
            raise InvalidCommand("from_position must not be negative", field="from_position")
        if from_position > head:
            raise BeyondLogHead(f"from_position {from_position} is beyond the log head "
                                f"{head}", from_position=from_position, head=head)
        self._replay_requested(from_position=from_position, at=at)

    @event("WebhookReplayRequested")
    def _replay_requested(self, from_position: int, at: datetime) -> None:
        self.replays += 1
        self.replay_from = from_position

    def secret_of_version(self, version: int) -> str | None:
        """The secret a registration or rotation made, while the endpoint still holds it."""
        if version == self.secret_version:
            return self.secret
        if version == self.secret_version - 1:
            return self.previous_secret
        return None

    def view(self) -> dict[str, Any]:
        return {"webhook_id": self.webhook_id, "url": self.url, "types": list(self.types),
                "description": self.description, "status": self.status,
                "disabled_reason": self.disabled_reason}
