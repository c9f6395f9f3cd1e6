"""A distributor's own pages in the console: what it earned and why, its downline, its
notifications, and its withdrawals (asking for one runs the API's own RequestWithdrawal,
through api/console_forms.py, after a confirmation page).

Each page exists twice. `/console/my_statement`, `/console/my_network`,
`/console/my_notifications`, `/console/my_withdrawals` are a distributor token's own (its
navigation). `/console/distributors/<id>/statement`, `/network`, `/notifications`,
`/withdrawals` show the same page for whoever reads that distributor through the API:
admin, operator and auditor any distributor, a distributor only itself; another's id is
404, as a nonexistent one. Its orders are the orders page, which a distributor's token
already sees filtered to its own (staff: `?distributor_id=`).

- Statement: the earnings figures of GET /distributors/{id}/earnings, what each bucket
  means, how they add up from the commission entries and the withdrawals (summed over all
  of them, not only the page shown), and every commission entry (GET
  /distributors/{id}/commissions): order, line, SKU, level (1: its own sale, 2: a direct
  downline's sale, with whose), base, rate or fixed amount per unit, the rule version that
  applied, amount, what was reversed (each reversal: the refund or cancellation behind it,
  and whether it came from pending or was clawed back from available), and the status.
- Downline: its referral code to copy (there is no setting for the shop's address nor a
  /r/<code> route to build a link from, so the code alone, in a read-only field), its
  direct downline and theirs: two levels, never a third. People's names and phones are
  masked as GET /audit/events masks them (commands/audit.py) for every role but admin.
  Phones are on the write side only (the read model keeps no personal data beyond the
  name), so each person shown is loaded: the page shows at most 50 direct members and 5
  of each one's own downline, with a link to all of them.
- Notifications: GET /notifications for that distributor, newest first.
- Withdrawals: its withdrawals (GET /withdrawals for it) and the form asking for one: an
  amount in yuan (exactly, to the fen; a sign, a third decimal, nothing or too much is
  refused with its reason), then a confirmation page with the amount and the available
  balance after it, then the command, for the distributor the path names (a distributor's
  token: always its own; never an id from the form). The rules (the minimum, the balance)
  are the wallet's own, checked before the confirmation page and again by the command.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from flask import Response, request, url_for
from flask_babel import gettext, lazy_gettext, lazy_pgettext
from marshmallow import fields, validate
from sqlalchemy import func, select, tuple_
from sqlalchemy.engine import Connection
from werkzeug.exceptions import NotFound

from api import console_i18n as i18n
from api import distributors as distributors_api
from api.auth import Principal
from api.console import PAGES, blp, console_page, load_query, money, next_page, render
from api.console_forms import (FormError, back_url, confirm_then_act, console_action,
                               load_form, parse_yuan, refused)
from api.http import decode_cursor, fenxiao, page, read_position, reading
from api.schemas import Id, PageQuery
from commands.audit import mask_name, mask_phone
from commands.messages import RequestWithdrawal
from domain.approvals import AWAITING
from domain.distributors import Distributor
from domain.errors import DomainError
from projections.commissions import CommissionsProjection, commissions, commissions_of
from projections.distributors import DistributorsProjection, direct_downline, get_distributor
from projections.distributors import distributors as distributors_table
from projections.ledger import LedgerProjection, earnings_of, list_withdrawals
from projections.ledger import withdrawals as withdrawals_table
from projections.notifications import NotificationsProjection, notification_view
from projections.notifications import notifications as notifications_table
from projections.notifications import utc

OWN = ("distributor",)
PAGES.extend([
    ("my_statement", lazy_gettext("Statement"), OWN),
    ("my_network", lazy_gettext("Downline"), OWN),
    ("my_notifications", lazy_gettext("Notifications"), OWN),
    ("my_withdrawals", lazy_gettext("Withdrawals"), OWN),
])
NESTED = 5  # of each direct member's own downline, on the downline page
OPEN_WITHDRAWALS = ("requested", AWAITING)  # in "withdrawing"
MAX_WITHDRAWAL_MINOR = 10**12  # the API's bound on an amount (api/schemas.py)
FORFEITS = {
    "suspended": lazy_gettext("the distributor was suspended"),
    "self_purchase": lazy_gettext("a purchase of the distributor's own"),
    "inactive": lazy_gettext("the distributor was not active"),
}
NOTIFICATION_KINDS = {
    "shortage": lazy_pgettext("notification", "out of stock"),
    "backorder_filled": lazy_pgettext("notification", "backorder filled"),
    "shipped": lazy_pgettext("notification", "shipped"),
    "delivered": lazy_pgettext("notification", "delivered"),
    "refund": lazy_pgettext("notification", "refund"),
    "cancelled": lazy_pgettext("notification", "cancelled"),
    "expired": lazy_pgettext("notification", "expired"),
    "webhook_disabled": lazy_pgettext("notification", "webhook disabled"),
}


# -- whose page, and links between the pages ------------------------------------------------

def subject(conn: Connection, principal: Principal, distributor_id: str) -> dict[str, Any]:
    """The distributor a page is about: 404 if there is none, or if it is another's."""
    found = get_distributor(conn, distributor_id)
    if found is None or (principal.role == "distributor"
                         and distributor_id != principal.distributor_id):
        raise NotFound(gettext("Distributor %(distributor_id)s was not found.",
                               distributor_id=distributor_id))
    return found


def own_id(principal: Principal) -> str:
    if not principal.distributor_id:  # a distributor token always names one; be sure
        raise NotFound(gettext("This token names no distributor."))
    return principal.distributor_id


def linker(principal: Principal, distributor_id: str) -> Callable[..., str]:
    """section -> its URL: the distributor's own pages for itself, else by id."""
    mine = principal.role == "distributor"

    def link(section: str, **args: Any) -> str:
        if mine:
            return url_for(f".my_{section}", **args)
        return url_for(f".self_{section}", distributor_id=distributor_id, **args)
    return link


def orders_url(principal: Principal, distributor_id: str) -> str:
    if principal.role == "distributor":
        return url_for(".orders")
    return url_for(".orders", distributor_id=distributor_id)


def pages(section: str, view: Callable[[Principal, str], Response]) -> None:
    """Two routes for one page: /my_<section> (a distributor's token: its own; in its
    navigation) and /distributors/<id>/<section> (whoever reads that distributor)."""
    def mine(principal: Principal) -> Response:
        return view(principal, own_id(principal))

    def by_id(principal: Principal, distributor_id: str) -> Response:
        return view(principal, distributor_id)
    blp.add_url_rule(f"/my_{section}", f"my_{section}", console_page(f"my_{section}")(mine),
                     methods=["GET"])
    blp.add_url_rule(f"/distributors/<distributor_id>/{section}", f"self_{section}",
                     console_page("earnings")(by_id),  # the roles reading a distributor
                     methods=["GET"])


def show(template: str, principal: Principal, found: dict[str, Any], section: str,
         **context: Any) -> Response:
    distributor_id = found["distributor_id"]
    return render(template, distributor=found, section=section,
                  link=linker(principal, distributor_id),
                  orders_url=orders_url(principal, distributor_id),
                  mine=principal.role == "distributor", **context)


# -- the statement --------------------------------------------------------------------------

def statement(principal: Principal, distributor_id: str) -> Response:
    query = load_query(PageQuery())
    app = fenxiao()
    currency = app.settings.currency
    with reading() as conn:
        position = read_position([LedgerProjection.name, CommissionsProjection.name,
                                  DistributorsProjection.name], query["min_position"])
        found = subject(conn, principal, distributor_id)
        figures = earnings_of(conn, distributor_id, currency)
        totals = reconcile(figures, entry_sums(conn, distributor_id, currency),
                           withdrawal_sums(conn, distributor_id, currency))
        rows = commissions_of(conn, distributor_id,
                              decode_cursor(query["cursor"], datetime, str, int),
                              query["limit"] + 1)
        listing = page(rows, query["limit"], lambda c: c["cursor"])
        sellers = sellers_of(conn, listing["items"])
    for entry in listing["items"]:
        entry["seller_id"] = sellers.get(entry["cursor"][1])
    settings = app.settings
    return show("self_statement.html", principal, found, "statement", position=position,
                earnings=figures, totals=totals, entries=listing["items"],
                forfeits=FORFEITS, freeze_days=settings.commission_freeze_days,
                window_days=settings.return_window_days,
                minimum=settings.min_withdrawal_minor,
                next_url=next_page(listing["next_cursor"]))


def entry_sums(conn: Connection, distributor_id: str, currency: str) -> dict[str, dict[str, int]]:
    """Per status of the distributor's commission entries: how many, their amounts, what
    was reversed of them."""
    c = commissions.c
    query = (select(c.status, func.count(), func.coalesce(func.sum(c.amount_minor), 0),
                    func.coalesce(func.sum(c.reversed_minor), 0))
             .where(c.distributor_id == distributor_id, c.currency == currency)
             .group_by(c.status))
    return {status: {"entries": int(n), "amount": int(amount), "reversed": int(reversed_)}
            for status, n, amount, reversed_ in conn.execute(query)}


def withdrawal_sums(conn: Connection, distributor_id: str, currency: str) -> dict[str, int]:
    """Per status of the distributor's withdrawals: the sum of their amounts."""
    w = withdrawals_table.c
    query = (select(w.status, func.coalesce(func.sum(w.amount_minor), 0))
             .where(w.distributor_id == distributor_id, w.currency == currency)
             .group_by(w.status))
    return {status: int(total) for status, total in conn.execute(query)}


def reconcile(figures: dict[str, Any], entries: dict[str, dict[str, int]],
              withdrawn: dict[str, int]) -> dict[str, Any]:
    """The balances as the commission entries and the withdrawals add up to them; each
    must be the ledger's own figure (`reconciled` says whether all are)."""
    earned = [s for status, s in entries.items() if status != "forfeited"]
    net = {status: s["amount"] - s["reversed"] for status, s in entries.items()}
    matured = net.get("available", 0) + net.get("reversed", 0)  # the latter: 0 each
    withdrawing = sum(withdrawn.get(status, 0) for status in OPEN_WITHDRAWALS)
    paid_out = withdrawn.get("paid", 0)
    totals = {
        "entries": sum(s["entries"] for s in earned),
        "lifetime_earned": sum(s["amount"] for s in earned),
        "reversed": sum(s["reversed"] for s in earned),
        "pending": net.get("pending", 0), "matured": matured,
        "withdrawing": withdrawing, "paid_out": paid_out,
        "available": matured - withdrawing - paid_out,
        "forfeited": entries.get("forfeited", {}).get("amount", 0),
        "forfeited_entries": entries.get("forfeited", {}).get("entries", 0),
    }
    totals["net"] = totals["lifetime_earned"] - totals["reversed"]
    totals["reconciled"] = all(totals[k] == figures[k] for k in (
        "lifetime_earned", "reversed", "pending", "available", "withdrawing", "paid_out"))
    return totals


def sellers_of(conn: Connection, entries: list[dict[str, Any]]) -> dict[str, str]:
    """line -> the distributor whose sale it was, for the level-2 entries shown (the
    level-1 entry of the same line names it)."""
    lines = sorted({e["cursor"][1] for e in entries if e["level"] == 2})
    if not lines:
        return {}
    c = commissions.c
    return dict(conn.execute(select(c.line_uuid, c.distributor_id)
                             .where(c.line_uuid.in_(lines), c.level == 1)).all())


# -- the downline ---------------------------------------------------------------------------

class NetworkQuery(PageQuery):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=50))
    under = Id(load_default=None)  # one direct member: all of its own downline


def network(principal: Principal, distributor_id: str) -> Response:
    """Direct downline (each with up to NESTED of its own), or with `under` one direct
    member's whole downline: the second level, and nothing below it."""
    query = load_query(NetworkQuery())
    with reading() as conn:
        position = read_position([DistributorsProjection.name], query["min_position"])
        found = subject(conn, principal, distributor_id)
        under = None
        if query["under"] is not None:
            under = get_distributor(conn, query["under"])
            if under is None or under["upline_id"] != distributor_id:
                raise NotFound(gettext("%(distributor_id)s is not in this downline.",
                                       distributor_id=query["under"]))
        parent = under["distributor_id"] if under else distributor_id
        after = decode_cursor(query["cursor"], str)
        rows = direct_downline(conn, parent, after and after[0], query["limit"] + 1)
        listing = page(rows, query["limit"], lambda d: d["distributor_id"])
        nested = {} if under else second_level(
            conn, [d["distributor_id"] for d in listing["items"]], NESTED)
    people = [*listing["items"], *(d for ds in nested.values() for d in ds)]
    if under:
        people.append(under)
    masked = principal.role != "admin"
    personal = personal_data(fenxiao(), people, masked)
    return show("self_network.html", principal, found, "network", position=position,
                under=under, members=listing["items"], nested=nested, personal=personal,
                masked=masked, shown_nested=NESTED,
                next_url=next_page(listing["next_cursor"]))


def second_level(conn: Connection, upline_ids: list[str], each: int
                 ) -> dict[str, list[dict[str, Any]]]:
    """The first `each` (by id) of every one's own direct downline, in one query."""
    if not upline_ids:
        return {}
    d = distributors_table.c
    ranked = (select(d.distributor_id, d.name, d.status, d.upline_id, d.downline_count,
                     func.row_number().over(partition_by=d.upline_id,
                                            order_by=d.distributor_id).label("n"))
              .where(d.upline_id.in_(upline_ids)).subquery())
    found: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(select(ranked).where(ranked.c.n <= each)
                            .order_by(ranked.c.upline_id, ranked.c.distributor_id)):
        found.setdefault(row.upline_id, []).append({
            "distributor_id": row.distributor_id, "name": row.name, "status": row.status,
            "upline_id": row.upline_id, "downline_count": row.downline_count})
    return found


def personal_data(app: Any, people: list[dict[str, Any]], masked: bool
                  ) -> dict[str, dict[str, str]]:
    """id -> name and phone, masked unless `masked` is false. The phone is the write
    side's (the read models keep none), decrypted as the log is read."""
    shown = {}
    for person in people:
        found = app.find(Distributor.create_id(person["distributor_id"]))
        phone = found.phone if found is not None else ""
        name = person["name"]
        shown[person["distributor_id"]] = {
            "name": mask_name(name) if masked else name,
            "phone": (mask_phone(phone) if masked else phone) if phone else "—"}
    return shown


# -- notifications --------------------------------------------------------------------------

def notifications(principal: Principal, distributor_id: str) -> Response:
    query = load_query(PageQuery())
    with reading() as conn:
        position = read_position([NotificationsProjection.name, DistributorsProjection.name],
                                 query["min_position"])
        found = subject(conn, principal, distributor_id)
        rows = newest_notifications(conn, distributor_id,
                                    decode_cursor(query["cursor"], datetime, str),
                                    query["limit"] + 1)
    listing = page(rows, query["limit"], lambda n: [n["at"], n["notification_id"]])
    return show("self_notifications.html", principal, found, "notifications",
                position=position, items=listing["items"],
                kind=lambda kind: i18n.word(NOTIFICATION_KINDS, kind),
                next_url=next_page(listing["next_cursor"]))


def newest_notifications(conn: Connection, distributor_id: str, before: list[Any] | None,
                         limit: int) -> list[dict[str, Any]]:
    """A distributor's notifications (what GET /notifications gives its token), newest
    first, paged by (at, id) downwards."""
    n = notifications_table.c
    query = (select(notifications_table).where(n.distributor_id == distributor_id)
             .order_by(n.at.desc(), n.notification_id.desc()).limit(limit))
    if before is not None:
        at, notification_id = before
        query = query.where(tuple_(n.at, n.notification_id)
                            < tuple_(utc(datetime.fromisoformat(at)), notification_id))
    return [notification_view(row) for row in conn.execute(query)]


# -- withdrawals ----------------------------------------------------------------------------

def withdrawals(principal: Principal, distributor_id: str) -> Response:
    """Its withdrawals, oldest first (as GET /withdrawals), and the form asking for one."""
    query = load_query(PageQuery())
    app = fenxiao()
    with reading() as conn:
        position = read_position([LedgerProjection.name, DistributorsProjection.name],
                                 query["min_position"])
        found = subject(conn, principal, distributor_id)
        figures = earnings_of(conn, distributor_id, app.settings.currency)
        sums = withdrawal_sums(conn, distributor_id, app.settings.currency)
        rows = list_withdrawals(conn, None, distributor_id,
                                decode_cursor(query["cursor"], datetime, str),
                                query["limit"] + 1)
    listing = page(rows, query["limit"], lambda w: [w["requested_at"], w["withdrawal_id"]])
    return show("self_withdrawals.html", principal, found, "withdrawals", position=position,
                earnings=figures, items=listing["items"],
                withdrawing=sum(sums.get(s, 0) for s in OPEN_WITHDRAWALS),
                paid_out=sums.get("paid", 0), minimum=app.settings.min_withdrawal_minor,
                next_url=next_page(listing["next_cursor"]))


for _section, _view in (("statement", statement), ("network", network),
                         ("notifications", notifications), ("withdrawals", withdrawals)):
    pages(_section, _view)


@blp.post("/distributors/<distributor_id>/withdrawals")
@console_action(distributors_api.request_withdrawal)
def self_withdraw(principal: Principal, distributor_id: str) -> Response:
    """The API's RequestWithdrawal for the distributor of the path (a distributor's token
    reaches only its own: console_action answers 404 for another's, and its own id is
    used whatever the path or the form say)."""
    if principal.role == "distributor":
        distributor_id = own_id(principal)
    amount = form_amount("amount")
    app = fenxiao()
    done = linker(principal, distributor_id)("withdrawals")
    wallet = app.wallet(distributor_id)
    if request.form.get("confirmed") != "1":  # the confirmation page: refused now if it
        try:  # would be (a repeat of a confirmed form is the command's, answered once)
            wallet.check_withdrawal(amount, app.settings.min_withdrawal_minor)
        except DomainError as error:
            return refused(error, back_url(done))

    def requested(reply: Any) -> str:
        return gettext("Withdrawal %(id)s of %(amount)s requested; it is paid once an "
                       "operator approves it.", id=reply.body["withdrawal_id"],
                       amount=money(amount))
    return confirm_then_act(
        RequestWithdrawal(distributor_id, amount), done, requested,
        title=gettext("Withdraw %(amount)s", amount=money(amount)),
        facts=[(gettext("Distributor"), distributor_id), (gettext("Amount"), money(amount)),
               (gettext("Available now"), money(wallet.available)),
               (gettext("Available after"), money(wallet.available - amount))],
        consequence=gettext("The amount moves from available to withdrawing until an "
                            "operator pays it out or refuses it (then it is available "
                            "again)."))


def form_amount(name: str) -> int:
    """The field `name`, yuan typed by a person, as integer fen within the API's bounds
    (its own schema checks them too); else FormError saying what is wrong with it."""
    fen, problem = yuan_to_fen(request.form.get(name, "").strip())
    if problem is not None:
        raise FormError(gettext("the amount is not valid"), **{name: [problem]})
    load_form(distributors_api.WithdrawalIn(),
              {"amount": {"amount": fen, "currency": fenxiao().settings.currency}})
    return fen


def yuan_to_fen(text: str) -> tuple[int, str | None]:
    """Fen, exactly (api/console_forms.py `parse_yuan`), or why the text is not an amount
    to withdraw."""
    decimals = text.rpartition(".")[2] if "." in text else ""
    if not text:
        return 0, gettext("enter an amount in yuan, such as 120.50")
    if text.startswith("-"):
        return 0, gettext("an amount to withdraw is more than zero")
    if decimals.isdigit() and len(decimals) > 2:
        return 0, gettext("at most two decimals: yuan and fen")
    try:
        fen = parse_yuan(text)
    except ValueError:
        return 0, gettext("an amount in yuan, such as 120.50 (digits, at most two "
                          "decimals, no sign)")
    if fen == 0:
        return 0, gettext("an amount to withdraw is more than zero")
    if fen > MAX_WITHDRAWAL_MINOR:
        return 0, gettext("at most %(max)s", max=money(MAX_WITHDRAWAL_MINOR))
    return fen, None
