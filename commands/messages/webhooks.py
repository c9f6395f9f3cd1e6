"""Webhook endpoints: registering, disabling, enabling, rotating secrets, pings, replays."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.messages.base import Command


@dataclass(frozen=True)
class RegisterWebhook(Command):
    status = 201
    url: str
    types: tuple[str, ...]
    description: str = ""

    def handle(self, app: Any) -> dict[str, Any]:
        return app.register_webhook(self.url, list(self.types), self.description)


@dataclass(frozen=True)
class DisableWebhook(Command):
    webhook_id: str
    reason: str = "disabled by an operator"
    automatic: bool = False  # the sender's, after failing for too long

    def handle(self, app: Any) -> dict[str, Any]:
        return app.disable_webhook(self.webhook_id, self.reason, self.automatic)


@dataclass(frozen=True)
class EnableWebhook(Command):
    webhook_id: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.enable_webhook(self.webhook_id)


@dataclass(frozen=True)
class RotateWebhookSecret(Command):
    webhook_id: str
    grace_s: int

    def handle(self, app: Any) -> dict[str, Any]:
        return app.rotate_webhook_secret(self.webhook_id, self.grace_s)


@dataclass(frozen=True)
class PingWebhook(Command):
    webhook_id: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.ping_webhook(self.webhook_id)


@dataclass(frozen=True)
class ReplayWebhook(Command):
    status = 202
    webhook_id: str
    from_position: int

    def handle(self, app: Any) -> dict[str, Any]:
        return app.replay_webhook(self.webhook_id, self.from_position)
