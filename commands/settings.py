"""Configuration read from the environment, in one place."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_SQLITE_PATH = Path("var") / "fenxiao.db"
MAX_TOKEN_CACHE_S = 300  # a revoked token never works for longer than this after


def database_url() -> str:
    url = os.environ.get("FENXIAO_DATABASE_URL", "").strip()
    if url:
        return url
    DEFAULT_SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_SQLITE_PATH.resolve()}"


@dataclass(frozen=True)
class Settings:
    """Every setting, each read from a FENXIAO_* variable by `from_env`.

    `token_cache_s` (FENXIAO_TOKEN_CACHE_S, default 5, 0 disables, at most 300): each API
    process keeps the tokens it found for this long instead of reading them on every
    request, so a token deleted from the store (revoked) still works for up to this long
    in a process that used it just before. A token not found is never kept: a token
    created a moment ago works at once.
    """

    database_url: str
    currency: str = "CNY"
    command_attempts: int = 40
    # Commands of concurrent requests committed together by the process's writer, at most
    # this many a commit (commands/writer.py); 0: each request commits its own command.
    writer_batch: int = 64
    projection_batch_size: int = 2000
    min_position_timeout_s: float = 5.0
    max_body_bytes: int = 1 << 20
    admin_token: str | None = None
    cipher_key: str | None = None
    # HMAC key of the event log's seal (projections/seal.py). Unset: sealing is disabled and
    # `audit verify` says so (not "ok"): a default key everyone knows would prove nothing.
    seal_key: str | None = field(default=None, repr=False)
    console_secret: str | None = None  # signs console cookies; unset: one kept in the store
    # The merchant's time zone (IANA name): the console shows every instant in it, whoever
    # reads, so two people looking at one order see one time.
    timezone: str = "Asia/Shanghai"
    binding_days: int = 0  # 0: a customer stays bound to the first referrer for good
    self_purchase_commission: bool = False
    min_withdrawal_minor: int = 100
    # A withdrawal or refund above this needs a second person's approval (four eyes).
    four_eyes_min_minor: int = 50_000
    reservation_timeout_s: int = 1800  # unpaid orders release their stock after this
    return_window_days: int = 7  # an order completes this long after delivery
    commission_freeze_days: int = 7  # commission matures this long after completion
    promised_days: int = 3  # the delivery time dispatch promises when choosing a carrier
    shipping_fee_minor: int = 0  # charged per consumer order ...
    free_shipping_min_minor: int | None = None  # ... unless its goods reach this amount
    compensation_reverses_commission: bool = False  # after-sales compensation as a refund
    # Reports: days of the sales report are calendar days at this offset from UTC (480:
    # China); replenishment forecasts daily demand over the last `demand_window_days`,
    # weighting a day half as much every `demand_half_life_days`, and plans with each
    # SKU's lead time and safety stock, these unless the SKU has its own.
    report_utc_offset_minutes: int = 0
    demand_half_life_days: int = 7
    demand_window_days: int = 56
    lead_time_days: int = 7
    safety_stock: int = 0
    rate_limit: str | None = "100 per second"  # per token (or address); None: no limit
    auth_failure_limit: str | None = "20 per minute"  # failed sign-ins per client address
    # Proxies (addresses or networks) whose X-Forwarded-For names the client; from anyone
    # else the header is ignored, so a client cannot pose as another address.
    trusted_proxies: tuple[str, ...] = ()
    # Seconds a found token is kept in each API process: the delay before a revoked
    # (deleted) token stops working. Bounded so revocation never waits for long.
    token_cache_s: float = 5.0
    # Webhooks (commands/webhooks.py): private, loopback and link-local destinations are
    # refused unless allowed (FENXIAO_WEBHOOK_ALLOW_PRIVATE=1, for tests and closed
    # networks); an endpoint failing without a break for this long is disabled.
    webhook_allow_private: bool = False
    webhook_disable_after_s: int = 3 * 24 * 3600

    def __post_init__(self) -> None:
        """Settings a rule divides by or counts with: refused at start, with the name."""
        for name, least in (("demand_half_life_days", 1), ("demand_window_days", 1),
                            ("lead_time_days", 0), ("safety_stock", 0),
                            ("return_window_days", 0), ("commission_freeze_days", 0),
                            ("reservation_timeout_s", 1), ("promised_days", 1),
                            ("shipping_fee_minor", 0), ("min_withdrawal_minor", 1),
                            ("four_eyes_min_minor", 0),
                            ("writer_batch", 0), ("webhook_disable_after_s", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"setting {name} must be at least {least}, "
                                 f"not {getattr(self, name)}")
        if not -16 * 60 <= self.report_utc_offset_minutes <= 16 * 60:
            raise ValueError("setting report_utc_offset_minutes must be within ±960 minutes")
        if not 0 <= self.token_cache_s <= MAX_TOKEN_CACHE_S:  # also refuses NaN
            raise ValueError(f"setting token_cache_s must be within 0..{MAX_TOKEN_CACHE_S} "
                             f"seconds, not {self.token_cache_s}")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"setting trusted_proxies: {proxy!r} is not an address or "
                                 "network (such as 10.0.0.5 or 10.0.0.0/8)") from None
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):  # unknown, or not a zone name at all
            raise ValueError(f"setting timezone must be an IANA time zone such as "
                             f"Asia/Shanghai, not {self.timezone!r}") from None

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        values: dict[str, object] = {
            "database_url": database_url(),
            "currency": os.environ.get("FENXIAO_CURRENCY", "CNY"),
            "admin_token": os.environ.get("FENXIAO_ADMIN_TOKEN") or None,
            "cipher_key": os.environ.get("FENXIAO_CIPHER_KEY") or None,
            "seal_key": os.environ.get("FENXIAO_SEAL_KEY") or None,
            "console_secret": os.environ.get("FENXIAO_CONSOLE_SECRET") or None,
            "timezone": os.environ.get("FENXIAO_TIMEZONE", "Asia/Shanghai"),
        }
        for name, key in (("projection_batch_size", "FENXIAO_PROJECTION_BATCH_SIZE"),
                          ("binding_days", "FENXIAO_BINDING_DAYS"),
                          ("min_withdrawal_minor", "FENXIAO_MIN_WITHDRAWAL"),
                          ("four_eyes_min_minor", "FENXIAO_FOUR_EYES_MIN"),
                          ("reservation_timeout_s", "FENXIAO_RESERVATION_TIMEOUT_S"),
                          ("return_window_days", "FENXIAO_RETURN_WINDOW_DAYS"),
                          ("commission_freeze_days", "FENXIAO_COMMISSION_FREEZE_DAYS"),
                          ("promised_days", "FENXIAO_PROMISED_DAYS"),
                          ("shipping_fee_minor", "FENXIAO_SHIPPING_FEE"),
                          ("free_shipping_min_minor", "FENXIAO_FREE_SHIPPING_MIN"),
                          ("report_utc_offset_minutes", "FENXIAO_REPORT_UTC_OFFSET_MINUTES"),
                          ("demand_half_life_days", "FENXIAO_DEMAND_HALF_LIFE_DAYS"),
                          ("demand_window_days", "FENXIAO_DEMAND_WINDOW_DAYS"),
                          ("lead_time_days", "FENXIAO_LEAD_TIME_DAYS"),
                          ("safety_stock", "FENXIAO_SAFETY_STOCK"),
                          ("writer_batch", "FENXIAO_WRITER_BATCH"),
                          ("webhook_disable_after_s", "FENXIAO_WEBHOOK_DISABLE_AFTER_S")):
            if os.environ.get(key):
                values[name] = int(os.environ[key])
        for name, key in (("token_cache_s", "FENXIAO_TOKEN_CACHE_S"),):
            if os.environ.get(key):
                values[name] = float(os.environ[key])
        if "FENXIAO_RATE_LIMIT" in os.environ:
            limit = os.environ["FENXIAO_RATE_LIMIT"].strip()
            values["rate_limit"] = None if limit in ("", "0", "off") else limit
        if os.environ.get("FENXIAO_TRUSTED_PROXIES", "").strip():
            values["trusted_proxies"] = tuple(
                part.strip() for part in os.environ["FENXIAO_TRUSTED_PROXIES"].split(",")
                if part.strip())
        if "FENXIAO_AUTH_FAILURE_LIMIT" in os.environ:
            limit = os.environ["FENXIAO_AUTH_FAILURE_LIMIT"].strip()
            values["auth_failure_limit"] = None if limit in ("", "0", "off") else limit
        values["self_purchase_commission"] = (
            os.environ.get("FENXIAO_SELF_PURCHASE_COMMISSION", "0") == "1")
        values["webhook_allow_private"] = (
            os.environ.get("FENXIAO_WEBHOOK_ALLOW_PRIVATE", "0") == "1")
        values["compensation_reverses_commission"] = (
            os.environ.get("FENXIAO_COMPENSATION_REVERSES_COMMISSION", "0") == "1")
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
