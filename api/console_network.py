"""The console's queues of the distributor network and its payouts, with their actions
(api/console_forms.py runs them: the API's own commands, as the signed-in token).

- Distributors (/console/applications; who reads GET /distributors: admin, operator,
  auditor): applications waiting for review by default, then the network by status.
  Approve or reject an application (a reason is required to reject); suspend or
  reinstate a distributor (with a reason); move it under another upline (admin only, as
  the API's route).
- Withdrawals (/console/withdrawals; staff): requested ones and those waiting for their
  second approval by default. Pay one with the bank's payment reference, after a
  confirmation page showing the amount and the distributor's balances; above
  FENXIAO_FOUR_EYES_MIN the first approval only records itself (domain/approvals.py),
  and the page then asks another operator for the second, with the reference the first
  gave. Refuse one with a reason.
"""
from __future__ import annotations

from typing import Any

from flask import Response, url_for
from flask_babel import gettext, lazy_gettext
from marshmallow import validate

from api import distributors as distributors_api
from api.console import PAGES, blp, console_page, load_query, money, next_page, render
from api.console_forms import (FormError, act, back_url, confirm_then_act, console_action,
                               form_text, load_form)
from api.console_work import COUNTERS
from api.http import decode_cursor, fenxiao, page, read_position, reading
from api.schemas import PageQuery, Str
from commands.messages import (ApproveDistributor, ApproveWithdrawal, ChangeUpline,
                               RejectDistributor, RejectWithdrawal, ReinstateDistributor,
                               SuspendDistributor)
from domain.approvals import AWAITING, needs_two
from projections.distributors import DistributorsProjection, list_distributors, status_counts
from projections.ledger import (LedgerProjection, earnings_of, list_withdrawals,
                                withdrawal_counts, withdrawal_row)

STAFF = ("admin", "operator", "auditor")
WAITING = ("requested", AWAITING)  # withdrawals someone must decide

PAGES.extend([
    ("applications", lazy_gettext("Distributors"), distributors_api.distributors_list.roles),
    ("withdrawals", lazy_gettext("Withdrawals"), STAFF),
])
COUNTERS.update({
    "applications": lambda conn: status_counts(conn).get("pending", 0),
    "withdrawals": lambda conn: sum(withdrawal_counts(conn).get(s, 0) for s in WAITING),
})


# -- distributors ---------------------------------------------------------------------------

class ApplicationQuery(PageQuery):
    status = Str(load_default="pending",
                 validate=validate.OneOf(distributors_api.DISTRIBUTOR_STATUSES))


@blp.get("/applications")
@console_page("applications")
def applications(principal: Any) -> Response:
    query = load_query(ApplicationQuery())
    with reading() as conn:
        position = read_position([DistributorsProjection.name], query["min_position"])
        rows = list_distributors(conn, query["status"], None,
                                 decode_cursor(query["cursor"], str, str), query["limit"] + 1)
        counts = status_counts(conn)
    listing = page(rows, query["limit"], lambda d: [d["applied_at"], d["distributor_id"]])
    return render("applications.html", position=position, status=query["status"],
                  statuses=distributors_api.DISTRIBUTOR_STATUSES, counts=counts,
                  items=listing["items"], next_url=next_page(listing["next_cursor"]))


def _network_done(status: str = "pending") -> str:
    return back_url(url_for(".applications", status=status))


def _reason(what: str) -> str:
    reason = form_text("reason")
    if reason is None:
        raise FormError(gettext("%(what)s needs a reason", what=what),
                        reason=[gettext("say why")])
    return load_form(distributors_api.ReasonIn(), {"reason": reason})["reason"]


@blp.post("/distributors/<distributor_id>/approve")
@console_action(distributors_api.approve)
def distributor_approve(principal: Any, distributor_id: str) -> Response:
    return act(ApproveDistributor(distributor_id), _network_done(),
               gettext("Distributor %(id)s approved.", id=distributor_id))


@blp.post("/distributors/<distributor_id>/reject")
@console_action(distributors_api.reject)
def distributor_reject(principal: Any, distributor_id: str) -> Response:
    return act(RejectDistributor(distributor_id, _reason(gettext("a rejection"))),
               _network_done(), gettext("Application %(id)s rejected.", id=distributor_id))


@blp.post("/distributors/<distributor_id>/suspend")
@console_action(distributors_api.suspend)
def distributor_suspend(principal: Any, distributor_id: str) -> Response:
    return act(SuspendDistributor(distributor_id, _reason(gettext("a suspension"))),
               _network_done("active"),
               gettext("Distributor %(id)s suspended.", id=distributor_id))


@blp.post("/distributors/<distributor_id>/reinstate")
@console_action(distributors_api.reinstate)
def distributor_reinstate(principal: Any, distributor_id: str) -> Response:
    return act(ReinstateDistributor(distributor_id, _reason(gettext("a reinstatement"))),
               _network_done("suspended"),
               gettext("Distributor %(id)s reinstated.", id=distributor_id))


@blp.post("/distributors/<distributor_id>/upline")
@console_action(distributors_api.change_upline)
def distributor_upline(principal: Any, distributor_id: str) -> Response:
    body = load_form(distributors_api.UplineIn(), {
        "upline_id": form_text("upline_id"), "reason": _reason(gettext("a move"))})
    return act(ChangeUpline(distributor_id, body["upline_id"], body["reason"]),
               _network_done("active"),
               gettext("Distributor %(id)s now sits under %(upline)s.", id=distributor_id,
                       upline=body["upline_id"] or gettext("no one")))


# -- withdrawals ----------------------------------------------------------------------------

class WithdrawalQueueQuery(PageQuery):
    status = Str(load_default="waiting", validate=validate.OneOf(
        ("waiting", *distributors_api.WITHDRAWAL_STATUSES)))


@blp.get("/withdrawals")
@console_page("withdrawals")
def withdrawals(principal: Any) -> Response:
    query = load_query(WithdrawalQueueQuery())
    statuses = WAITING if query["status"] == "waiting" else (query["status"],)
    after = decode_cursor(query["cursor"], str, str)
    with reading() as conn:
        position = read_position([LedgerProjection.name], query["min_position"])
        rows = [row for status in statuses  # two short index scans, merged oldest first
                for row in list_withdrawals(conn, status, None, after, query["limit"] + 1)]
        counts = withdrawal_counts(conn)
    rows.sort(key=lambda w: (w["requested_at"], w["withdrawal_id"]))
    listing = page(rows[:query["limit"] + 1], query["limit"],
                   lambda w: [w["requested_at"], w["withdrawal_id"]])
    return render("withdrawals.html", position=position, status=query["status"],
                  statuses=distributors_api.WITHDRAWAL_STATUSES, counts=counts,
                  waiting=sum(counts.get(s, 0) for s in WAITING), items=listing["items"],
                  four_eyes_min=fenxiao().settings.four_eyes_min_minor,
                  next_url=next_page(listing["next_cursor"]))


def _withdrawals_done() -> str:
    return back_url(url_for(".withdrawals"))


@blp.post("/withdrawals/<withdrawal_id>/approve")
@console_action(distributors_api.approve_withdrawal)
def withdrawal_approve(principal: Any, withdrawal_id: str) -> Response:
    body = load_form(distributors_api.PaymentIn(),
                     {"payment_reference": form_text("payment_reference")})
    reference = body["payment_reference"]
    settings = fenxiao().settings
    facts = [(gettext("Withdrawal"), withdrawal_id),
             (gettext("Payment reference"), reference)]
    consequence = gettext("The money is recorded as paid out to the distributor; this "
                          "cannot be undone.")
    with reading() as conn:
        found = withdrawal_row(conn, withdrawal_id)
        balances = earnings_of(conn, found["distributor_id"], settings.currency) \
            if found else None
    if found is not None:
        facts[1:1] = [(gettext("Distributor"), found["distributor_id"]),
                      (gettext("Amount"), money(found["amount"])),
                      (gettext("Withdrawing now"), money(balances["withdrawing"])),
                      (gettext("Paid out so far"), money(balances["paid_out"]))]
        if found["status"] == "requested" and needs_two(found["amount"],
                                                         settings.four_eyes_min_minor):
            consequence = gettext(
                "The amount is above %(limit)s: this records your approval only; the "
                "money is paid when a second person approves it too.",
                limit=money(settings.four_eyes_min_minor))
        elif found["approvals"]:
            facts.append((gettext("First approved by"), ", ".join(found["approvals"])))

    def done(reply: Any) -> str:
        if reply.status == 202:
            return gettext("Withdrawal %(id)s approved once; a second person's approval "
                           "pays it.", id=withdrawal_id)
        return gettext("Withdrawal %(id)s paid, reference %(reference)s.", id=withdrawal_id,
                       reference=reference)
    return confirm_then_act(ApproveWithdrawal(withdrawal_id, reference), _withdrawals_done(),
                            done, title=gettext("Pay withdrawal %(id)s", id=withdrawal_id),
                            facts=facts, consequence=consequence)


@blp.post("/withdrawals/<withdrawal_id>/reject")
@console_action(distributors_api.reject_withdrawal)
def withdrawal_reject(principal: Any, withdrawal_id: str) -> Response:
    return act(RejectWithdrawal(withdrawal_id, _reason(gettext("a refusal"))),
               _withdrawals_done(), gettext("Withdrawal %(id)s refused; the amount is "
                                            "available to the distributor again.",
                                            id=withdrawal_id))
