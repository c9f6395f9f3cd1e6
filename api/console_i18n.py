"""The console in the operators' language: which locale and time zone a page is written
in, and how it writes amounts, instants and the system's own words (statuses, roles).

The locale is the one chosen with the switch in the page header (GET /console/language,
remembered in the `fenxiao_lang` cookie), else the browser's Accept-Language best match,
else English. The time zone is the merchant's (FENXIAO_TIMEZONE), not the reader's: two
people looking at one order, one of them travelling, must see the same time.

Texts are marked with gettext in api/console*.py and the console's templates; the catalogs
are api/translations/ (`make translations` extracts, merges and compiles them;
tests/test_console_i18n.py fails while a marked text has no Chinese).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from flask import Flask, Response, request
from flask_babel import (Babel, format_currency, format_datetime, get_locale, lazy_gettext,
                         lazy_pgettext)
from werkzeug.http import HTTP_STATUS_CODES

from api.http import fenxiao

ENGLISH, CHINESE = "en", "zh_Hans_CN"  # Babel's own name: "zh_CN" parses to it anyway
LOCALES = (ENGLISH, CHINESE)
LANGUAGE_COOKIE = "fenxiao_lang"
LANGUAGE_COOKIE_MAX_AGE_S = 365 * 24 * 3600  # a choice of language is not a session's
TRANSLATIONS = Path(__file__).with_name("translations")
# One pattern in both languages: tables line up, and the offset makes an instant
# unambiguous where a zone abbreviation would not ("CST" is also Chicago's).
WHEN_PATTERN = "yyyy-MM-dd HH:mm:ss xxx"


def init(flask: Flask) -> None:
    """`_()`, `ngettext()`, `pgettext()` and the helpers below in every template (globals,
    so imported macros have them too), in the request's locale."""
    Babel(flask, locale_selector=console_locale, timezone_selector=console_timezone,
          default_translation_directories=str(TRANSLATIONS))
    flask.jinja_env.globals.update(
        money=money, money_plain=money_plain, when=when,
        status_label=lambda status: word(STATUSES, status),
        role_label=lambda role: word(ROLES, role),
        case_type_label=lambda case_type: word(CASE_TYPES, case_type),
        group_label=lambda group: word(GROUPS, group),
        seal_problem=lambda problem: word(SEAL_PROBLEMS, problem))


def console_locale() -> str:
    """The switch's choice, else the browser's preference, else English."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LOCALES:
        return chosen
    for tag, quality in request.accept_languages:  # most preferred first
        if quality > 0 and (locale := locale_for(tag)) is not None:
            return locale
    return ENGLISH


def locale_for(tag: str) -> str | None:
    """Which of our locales serves a language tag (zh-CN, zh_CN, zh, en-GB ...): any
    English, and Chinese unless written in Traditional characters (zh-TW, zh-HK,
    zh-Hant), whose readers are better served by English than by the other script."""
    try:
        wanted = Locale.parse(tag.replace("_", "-"), sep="-")
    except (ValueError, TypeError, UnknownLocaleError):  # "*", private-use tags
        return None
    if wanted.language == "en":
        return ENGLISH
    if wanted.language == "zh" and wanted.script in (None, "Hans"):
        return CHINESE
    return None


def remember(response: Response, locale: str) -> Response:
    """The switch's cookie: sent with top-level navigation from elsewhere too (Lax), so a
    bookmarked page opens in the chosen language; it says nothing worth stealing."""
    response.set_cookie(LANGUAGE_COOKIE, locale, max_age=LANGUAGE_COOKIE_MAX_AGE_S,
                        path="/console", samesite="Lax", httponly=True,
                        secure=request.is_secure)
    return response


def console_timezone() -> ZoneInfo:
    """A ZoneInfo, not the name: Flask-Babel would look a name up in pytz's own copy of
    the zone database, which may not know a zone the settings accepted."""
    return ZoneInfo(fenxiao().settings.timezone)


def html_lang() -> str:
    """The page's `lang`: en, zh-CN."""
    locale = get_locale()
    return "-".join(part for part in (locale.language, locale.territory) if part)


# -- amounts and instants -----------------------------------------------------------------

def money(amount_minor: int | None) -> str:
    """Minor units as the locale writes the currency: ¥1,234.56 in Chinese, CN¥1,234.56 in
    English (which must tell the yuan from the yen); exact, through Decimal."""
    if amount_minor is None:
        return "—"
    return format_currency(Decimal(amount_minor).scaleb(-2), fenxiao().settings.currency)


def money_plain(amount_minor: int) -> str:
    """Minor units as a bare number a form's input can hold: 1234.56, -0.05."""
    return str(Decimal(amount_minor).scaleb(-2))


def when(at: Any) -> str:
    """An instant in the merchant's time zone with its offset; one without a zone (what
    SQLite gives back) is UTC, as every instant the system records is."""
    if at is None:
        return "—"
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return format_datetime(at, WHEN_PATTERN)


# -- the system's own words ---------------------------------------------------------------
# Statuses, roles and report groupings are identifiers in the API and in URLs; pages show
# them in the reader's language (an identifier not listed here is shown as it is).

STATUSES = {
    "active": lazy_pgettext("status", "active"),
    "approved": lazy_pgettext("status", "approved"),
    "available": lazy_pgettext("status", "available"),
    "awaiting_second_approval": lazy_pgettext("status", "awaiting second approval"),
    "backordered": lazy_pgettext("status", "backordered"),
    "cancelled": lazy_pgettext("status", "cancelled"),
    "closed": lazy_pgettext("status", "closed"),
    "compensated": lazy_pgettext("status", "compensated"),
    "completed": lazy_pgettext("status", "completed"),
    "created": lazy_pgettext("status", "created"),
    "delivered": lazy_pgettext("status", "delivered"),
    "dispatched": lazy_pgettext("status", "dispatched"),
    "exception": lazy_pgettext("status", "delivery exception"),
    "exchanged": lazy_pgettext("status", "exchanged"),
    "forfeited": lazy_pgettext("status", "forfeited"),
    "fulfilling": lazy_pgettext("status", "fulfilling"),
    "in_transit": lazy_pgettext("status", "in transit"),
    "out_for_delivery": lazy_pgettext("status", "out for delivery"),
    "packed": lazy_pgettext("status", "packed"),
    "paid": lazy_pgettext("status", "paid"),
    "pending": lazy_pgettext("status", "pending"),
    "picked": lazy_pgettext("status", "picked"),
    "placed": lazy_pgettext("status", "placed"),
    "received": lazy_pgettext("status", "received"),
    "refunded": lazy_pgettext("status", "refunded"),
    "rejected": lazy_pgettext("status", "rejected"),
    "repaired": lazy_pgettext("status", "repaired"),
    "requested": lazy_pgettext("status", "requested"),
    "reversed": lazy_pgettext("status", "reversed"),
    "shipped": lazy_pgettext("status", "shipped"),
    "suspended": lazy_pgettext("status", "suspended"),
}
ROLES = {
    "admin": lazy_pgettext("role", "admin"),
    "operator": lazy_pgettext("role", "operator"),
    "warehouse": lazy_pgettext("role", "warehouse"),
    "auditor": lazy_pgettext("role", "auditor"),
    "integration": lazy_pgettext("role", "integration"),
    "distributor": lazy_pgettext("role", "distributor"),
}
CASE_TYPES = {
    "refund_only": lazy_pgettext("case type", "refund only"),
    "return_refund": lazy_pgettext("case type", "return and refund"),
    "exchange": lazy_pgettext("case type", "exchange"),
    "repair": lazy_pgettext("case type", "repair"),
    "compensation": lazy_pgettext("case type", "compensation"),
}
GROUPS = {
    "day": lazy_pgettext("group", "day"),
    "sku": lazy_pgettext("group", "SKU"),
    "distributor": lazy_pgettext("group", "distributor"),
}
# What the seal's verification found (projections/seal.py PROBLEMS).
SEAL_PROBLEMS = {
    "altered": lazy_gettext("an event was altered"),
    "inserted": lazy_gettext("an event was inserted"),
    "deleted": lazy_gettext("events were deleted"),
    "forged_seal": lazy_gettext("a seal is forged"),
    "sealing_disabled": lazy_gettext("sealing is disabled"),
    "seal_key_invalid": lazy_gettext("the seal key is not valid"),
}
# A title for each status an error page may have; others get the HTTP reason phrase.
HTTP_TITLES = {
    400: lazy_gettext("Bad request"),
    401: lazy_gettext("Not signed in"),
    403: lazy_gettext("Not allowed"),
    404: lazy_gettext("Not found"),
    405: lazy_gettext("Method not allowed"),
    409: lazy_gettext("Conflict"),
    413: lazy_gettext("Request too large"),
    415: lazy_gettext("Unsupported media type"),
    422: lazy_gettext("Invalid request"),
    429: lazy_gettext("Too many requests"),
    500: lazy_gettext("Internal error"),
    503: lazy_gettext("Service unavailable"),
}
# What a page says for an HTTP error raised without words of ours (Werkzeug's defaults).
HTTP_EXPLANATIONS = {
    400: lazy_gettext("The request could not be understood."),
    404: lazy_gettext("There is no such page in the console."),
    405: lazy_gettext("This page does not take that kind of request."),
    413: lazy_gettext("The request is too large."),
    500: lazy_gettext("An internal error occurred."),
}


def word(words: dict[str, Any], identifier: str | None) -> str:
    return str(words.get(identifier, identifier or ""))


def http_title(status: int) -> str:
    return str(HTTP_TITLES.get(status) or HTTP_STATUS_CODES.get(status, "Error"))


def template_context() -> dict[str, Any]:
    """What base.html needs to know of the request's language."""
    return {"html_lang": html_lang(), "locale": str(get_locale())}
