"""The console in Simplified Chinese and English, through Flask's test client on the demo
store (SQLite and PostgreSQL): the browser's Accept-Language picks the language, the
switch's cookie overrides it and is remembered, the switch never leads off the console;
amounts carry the currency symbol, instants are in the merchant's time zone; and the
catalogs are complete: every text marked in api/console*.py and the console templates has
its Chinese, the compiled .mo files are those of the .po files, and no template shows
text that is not marked for translation."""
from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask.testing import FlaskClient
from flask_babel.speaklater import LazyString

from api import create_app
from api import distributors as distributors_api
from api import orders as orders_api
from api import purchasing as purchasing_api
from api.console import PAGES
from api.console_i18n import (CASE_TYPES, CHINESE, LANGUAGE_COOKIE, STATUSES, TRANSLATIONS,
                              money, money_plain, when)
from commands import Fenxiao
from commands.settings import Settings
from domain import aftersales, fulfilment
from tests.test_console import Console, Figures, console, sign_in  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "api" / "templates" / "console"
CATALOG = TRANSLATIONS / CHINESE / "LC_MESSAGES"
CHINESE_BROWSER = {"Accept-Language": "zh-CN,zh;q=0.9"}
ENGLISH_BROWSER = {"Accept-Language": "en-US,en;q=0.9"}


def page(client: FlaskClient, path: str, headers: dict[str, str] | None = None) -> Any:
    reply = client.get(path, headers=headers or {})
    assert reply.status_code == 200, reply.text[:2000]
    return reply


def lang_of(html: str) -> str:
    return re.search(r'<html lang="([^"]+)">', html).group(1)


def nav_of(html: str) -> list[str]:
    nav = re.search(r'<nav aria-label="[^"]+">(.*?)</nav>', html, re.S).group(1)
    return re.findall(r'href="/console/\w+"[^>]*>([^<]+)<', nav)


# -- choosing the language -------------------------------------------------------------------

@pytest.mark.parametrize("accept, lang", [
    ("zh-CN,zh;q=0.9", "zh-CN"), ("zh", "zh-CN"), ("zh-Hans", "zh-CN"), ("zh_CN", "zh-CN"),
    ("fr, zh;q=0.5", "zh-CN"), ("en-US,en;q=0.9,zh-CN;q=0.8", "en"), ("en", "en"),
    ("zh-TW", "en"), ("fr", "en"), ("*", "en"), ("", "en"), ("zh-CN;q=0", "en")])
def test_the_browser_language_picks_the_pages_language(console: Console, accept: str,
                                                       lang: str) -> None:
    signin = page(console.flask.test_client(), "/console/signin", {"Accept-Language": accept})
    assert lang_of(signin.text) == lang
    assert ("登录" in signin.text) == (lang == "zh-CN")
    assert ("Sign in" in signin.text) == (lang == "en")


def test_a_chinese_browser_gets_chinese_pages(console: Console) -> None:
    client = console.browser("admin")
    orders = page(client, "/console/orders", CHINESE_BROWSER).text
    assert lang_of(orders) == "zh-CN"
    assert nav_of(orders)[:4] == ["库存", "订单", "收益", "销售"]
    assert "退出登录" in orders and "管理员" in orders  # the role, in words
    assert ">已送达 <span class=\"count\" data-status=\"delivered\">" in orders  # a status tab
    assert "Orders" not in orders and "Sign out" not in orders
    order = page(client, "/console/orders/DEMO-O1", CHINESE_BROWSER).text
    assert "订单 DEMO-O1" in order and "商品明细" in order and "单价" in order
    audit = Figures(page(client, "/console/audit", CHINESE_BROWSER).text).figures
    assert audit["verdict"] == "完好"
    english = page(client, "/console/orders", ENGLISH_BROWSER).text
    assert lang_of(english) == "en" and nav_of(english)[:2] == ["Inventory", "Orders"]


def test_error_pages_speak_the_readers_language_and_keep_codes(console: Console) -> None:
    client = console.browser("distributor")
    missing = client.get("/console/no-such-page", headers=CHINESE_BROWSER)
    assert missing.status_code == 404
    assert "<h1>未找到</h1>" in missing.text and "控制台中没有这个页面。" in missing.text
    forbidden = client.get("/console/inventory", headers=CHINESE_BROWSER)
    assert forbidden.status_code == 403 and "「分销商」角色的令牌无权打开此页面。" in forbidden.text
    bad = client.get("/console/orders?cursor=abc", headers=CHINESE_BROWSER)
    assert bad.status_code == 422 and "<h1>请求无效</h1>" in bad.text
    assert Figures(bad.text).figures["error_code"] == "validation_error"  # as the API says it
    english = client.get("/console/orders?cursor=abc", headers=ENGLISH_BROWSER)
    assert "<h1>Invalid request</h1>" in english.text
    assert Figures(english.text).figures["error_code"] == "validation_error"


# -- the switch --------------------------------------------------------------------------------

def switch(client: FlaskClient, lang: str, next_url: str | None = None, **headers: str) -> Any:
    query = {"lang": lang} if next_url is None else {"lang": lang, "next": next_url}
    return client.get("/console/language", query_string=query, headers=headers)


def test_the_switch_overrides_the_browser_and_is_remembered(console: Console) -> None:
    client = console.browser("operator")
    reply = switch(client, "zh_CN", "/console/orders?status=paid", **ENGLISH_BROWSER)
    assert reply.status_code == 303 and reply.headers["Location"] == "/console/orders?status=paid"
    cookie = [v for k, v in reply.headers.items()
              if k == "Set-Cookie" and v.startswith(LANGUAGE_COOKIE + "=")]
    assert len(cookie) == 1
    flags = {part.strip().lower() for part in cookie[0].split(";")}
    assert {f"{LANGUAGE_COOKIE}={CHINESE}".lower(), "path=/console", "httponly",
            "samesite=lax"} <= flags
    assert any(flag.startswith("max-age=") and int(flag[8:]) >= 30 * 24 * 3600 for flag in flags)
    for path in ("/console/orders", "/console/inventory", "/console/replenishment"):
        assert lang_of(page(client, path, ENGLISH_BROWSER).text) == "zh-CN", path
    back = switch(client, "en", "/console/inventory", **CHINESE_BROWSER)
    assert back.status_code == 303
    assert lang_of(page(client, "/console/inventory", CHINESE_BROWSER).text) == "en"


def test_the_switch_is_in_every_header_and_comes_back_to_the_page(console: Console) -> None:
    anonymous = page(console.flask.test_client(), "/console/signin?next=/console/sales").text
    links = dict((lang, target) for target, lang in re.findall(
        r'<a href="(/console/language\?lang=(\w+)[^"]*)"', anonymous))
    assert set(links) == {"zh_CN", "en"}
    assert "中文</a>" in anonymous and "English</a>" in anonymous
    client = console.flask.test_client()
    reply = client.get(links["zh_CN"].replace("&amp;", "&"))
    assert reply.status_code == 303
    assert reply.headers["Location"] == "/console/signin?next=/console/sales"
    assert lang_of(page(client, reply.headers["Location"]).text) == "zh-CN"
    signed_in = page(console.browser("auditor"), "/console/timeline?order_id=DEMO-O1").text
    assert "/console/language?lang=en&amp;next=/console/timeline?order_id%3DDEMO-O1" in signed_in


@pytest.mark.parametrize("target", [
    "https://evil.example/console/", "//evil.example/console", "/api/v1/orders",
    "/console\\@evil.example", "javascript:alert(1)", "http:/console", ""])
def test_the_switch_never_leaves_the_console(console: Console, target: str) -> None:
    reply = switch(console.flask.test_client(), "zh_CN", target)
    assert reply.status_code == 303 and reply.headers["Location"] == "/console/", target


def test_the_switch_refuses_a_language_the_console_does_not_speak(console: Console) -> None:
    client = console.flask.test_client()
    for lang in ("fr", "zh-TW", "x-klingon", "*"):
        reply = switch(client, lang, "/console/orders")
        assert reply.status_code == 422 and reply.mimetype == "text/html", lang
        assert LANGUAGE_COOKIE not in reply.headers.get("Set-Cookie", "")
    assert client.get("/console/language?lang=zh_CN&colour=red").status_code == 422
    client.set_cookie(LANGUAGE_COOKIE, "klingon", path="/console")  # stale or forged: ignored
    assert lang_of(page(client, "/console/signin", CHINESE_BROWSER).text) == "zh-CN"


# -- amounts and instants ----------------------------------------------------------------------

def written(console: Console, headers: dict[str, str], write: Any, *args: Any) -> str:
    with console.flask.test_request_context("/console/", headers=headers):
        return write(*args)


def test_amounts_carry_the_currency_symbol_and_separators(console: Console) -> None:
    for amount_minor, chinese, english in ((123456, "¥1,234.56", "CN¥1,234.56"),
                                           (-123456, "-¥1,234.56", "-CN¥1,234.56"),
                                           (5, "¥0.05", "CN¥0.05"), (0, "¥0.00", "CN¥0.00"),
                                           (123456789012345, "¥1,234,567,890,123.45",
                                            "CN¥1,234,567,890,123.45")):
        assert written(console, CHINESE_BROWSER, money, amount_minor) == chinese
        assert written(console, ENGLISH_BROWSER, money, amount_minor) == english
    assert written(console, CHINESE_BROWSER, money, None) == "—"
    assert [money_plain(a) for a in (123456, -5, 0, 100)] == ["1234.56", "-0.05", "0.00",
                                                             "1.00"]
    client = console.browser("admin")
    total = console.api("/orders/DEMO-O1")["total"]
    zh = Figures(page(client, "/console/orders/DEMO-O1", CHINESE_BROWSER).text).figures
    assert zh["total"] == "¥345.00" == written(console, CHINESE_BROWSER, money, total)
    en = Figures(page(client, "/console/orders/DEMO-O1", ENGLISH_BROWSER).text).figures
    assert en["total"] == "CN¥345.00"


def test_instants_are_shown_in_the_merchants_time_zone(console: Console) -> None:
    assert console.app.settings.timezone == "Asia/Shanghai"  # the default
    known = datetime(2026, 12, 8, 1, 30, tzinfo=timezone.utc)
    for at in (known, known.replace(tzinfo=None), known.isoformat()):  # naive is UTC
        for headers in (CHINESE_BROWSER, ENGLISH_BROWSER):
            assert written(console, headers, when, at) == "2026-12-08 09:30:00 +08:00"
    assert written(console, CHINESE_BROWSER, when, None) == "—"
    placed = console.api("/orders/DEMO-O1")["created_at"]
    shown = Figures(page(console.browser("admin"), "/console/orders/DEMO-O1",
                         CHINESE_BROWSER).text).figures["created_at"]
    assert shown == local(placed, "Asia/Shanghai") and shown.endswith(" +08:00")


def local(instant: str, zone: str) -> str:
    at = datetime.fromisoformat(instant).astimezone(ZoneInfo(zone))
    return f"{at:%Y-%m-%d %H:%M:%S} {at.isoformat()[-6:]}"


def test_fenxiao_timezone_changes_the_times_shown(console: Console, monkeypatch) -> None:
    monkeypatch.setenv("FENXIAO_TIMEZONE", "America/New_York")
    assert Settings.from_env(database_url="sqlite://").timezone == "America/New_York"
    app = Fenxiao(replace(console.app.settings, timezone="America/New_York"))
    try:
        client = create_app(app.settings, application=app).test_client()
        assert sign_in(client, console.tokens["admin"]).status_code == 303
        placed = console.api("/orders/DEMO-O1")["created_at"]
        rows = Figures(page(client, "/console/orders", CHINESE_BROWSER).text).rows["orders"]
        assert rows["DEMO-O1"]["created_at"] == local(placed, "America/New_York")
        assert rows["DEMO-O1"]["created_at"][-6:] in ("-05:00", "-04:00")
    finally:
        app.close()


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "Asia", "../etc/localtime", "CST+8"])
def test_an_unknown_time_zone_is_refused_at_start(zone: str, monkeypatch) -> None:
    with pytest.raises(ValueError, match="timezone"):
        Settings(database_url="sqlite://", timezone=zone)
    monkeypatch.setenv("FENXIAO_TIMEZONE", zone)
    with pytest.raises(ValueError, match="timezone"):
        Settings.from_env(database_url="sqlite://")


# -- the catalogs --------------------------------------------------------------------------------

def chinese_catalog() -> Any:
    with (CATALOG / "messages.po").open("rb") as po:
        return read_po(po)


def extracted(tmp_path: Path) -> Any:
    """What `make translations` extracts now, with the Makefile's own keywords."""
    keywords = re.search(r"^BABEL_KEYWORDS := (.+)$", (ROOT / "Makefile").read_text(),
                         re.M).group(1).split()
    pot = tmp_path / "messages.pot"
    subprocess.run([str(ROOT / ".venv" / "bin" / "pybabel"), "--quiet", "extract",
                    "-F", "babel.cfg", *keywords, "-o", str(pot), "."],
                   cwd=ROOT, check=True, capture_output=True)
    with pot.open("rb") as file:
        return read_po(file)


def test_every_marked_text_has_its_chinese(tmp_path: Path) -> None:
    catalog = chinese_catalog()
    missing = [(m.context, m.id) for m in extracted(tmp_path)
               if m.id and not translated(catalog.get(m.id, m.context))]
    assert missing == [], "run `make translations` and translate these in " \
        f"{CATALOG / 'messages.po'}: {missing}"
    untranslated = [(m.context, m.id) for m in catalog if m.id and not translated(m)]
    assert untranslated == []
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert problems == []  # placeholders of each translation are the text's own


def translated(message: Any) -> bool:
    if message is None or message.fuzzy:
        return False
    strings = message.string if isinstance(message.string, (list, tuple)) else [message.string]
    return all(strings)


def test_the_compiled_catalog_is_the_po_file() -> None:
    compiled = BytesIO()
    write_mo(compiled, chinese_catalog(), use_fuzzy=False)  # what `pybabel compile` writes
    assert (CATALOG / "messages.mo").read_bytes() == compiled.getvalue(), \
        "the .mo is stale: run `make translations`"


def test_the_page_names_are_translated_when_shown(console: Console) -> None:
    for _endpoint, label, _roles in PAGES:
        assert isinstance(label, LazyString), label  # not fixed at import, in English
        with console.flask.test_request_context("/console/", headers=CHINESE_BROWSER):
            chinese = str(label)
        with console.flask.test_request_context("/console/", headers=ENGLISH_BROWSER):
            english = str(label)
        assert chinese != english and not re.search("[A-Za-z]", chinese), (english, chinese)


def test_every_status_and_case_type_has_words() -> None:
    """Statuses are identifiers; the pages show them through these words."""
    for statuses in (orders_api.STATUSES, distributors_api.DISTRIBUTOR_STATUSES,
                     distributors_api.WITHDRAWAL_STATUSES, purchasing_api.STATUSES,
                     aftersales.STATUSES, fulfilment.CARRIER_STATUSES,
                     ("pending", "available", "reversed", "forfeited"),  # commission entries
                     ("created", "picked", "packed", "dispatched")):  # shipments
        assert set(statuses) <= set(STATUSES), set(statuses) - set(STATUSES)
    assert set(aftersales.TYPES) == set(CASE_TYPES)


# Text a template may show unmarked: names, symbols, and the switch's own two words.
UNMARKED = {"FX", "Fenxiao", "English", "v"}


def unmarked_text(source: str) -> list[str]:
    """Words with Latin letters that a template shows outside {{ ... }} and tags, and
    in attributes people read (aria-label, title, placeholder, alt)."""
    source = re.sub(r"{#.*?#}", "", source, flags=re.S)
    source = re.sub(r"{%-?\s*trans\b.*?endtrans\s*-?%}", "", source, flags=re.S)
    shown = [value for _name, value in re.findall(
        r'\b(aria-label|title|placeholder|alt)="([^"]*)"', source)]
    source = re.sub(r"{%.*?%}|{{.*?}}", " ", source, flags=re.S)
    text = re.sub(r"<[^>]*>|&\w+;", " ", source)
    words = [w for chunk in [text, *(re.sub(r"{{.*?}}", " ", v) for v in shown)]
             for w in chunk.split() if re.search("[A-Za-z]", w)]
    return [w for w in words if w not in UNMARKED]


def test_templates_show_no_text_unmarked_for_translation() -> None:
    found = {path.name: unmarked_text(path.read_text())
             for path in sorted(TEMPLATES.glob("**/*.html"))}
    assert {name: words for name, words in found.items() if words} == {}
    assert unmarked_text('<p title="Hint">{{ _("Marked") }} Forgotten</p>') == \
        ["Forgotten", "Hint"]
