"""Commission accrual, maturity and reversal, and withdrawals: every money movement is a
balanced journal entry, and each distributor's wallet (the write-side balance the
withdrawal rules need) moves in the same atomic save."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from commands.app import Pending, current_actor
from commands.distributors import DistributorService
from domain.accruals import AccrualBasis, LineCommission
from domain.commissions import (Accrual, Beneficiary, Forfeit, PaidLine, RuleTerms,
                                split_commission)
from domain.errors import Duplicate, InvalidTransition
from domain.ledger import (JournalEntry, PayoutReference, Wallet, Withdrawal, accrual_lines,
                           clawback_lines, maturity_lines, parse_account,
                           reverse_pending_lines, withdrawal_paid_lines,
                           withdrawal_rejected_lines, withdrawal_request_lines)

REVERSAL_LINES: dict[str, Callable[[str, int], list[dict[str, Any]]]] = {
    "pending": reverse_pending_lines, "available": clawback_lines}
REVERSAL_KIND = {"pending": "reversal", "available": "clawback"}


@dataclass(frozen=True)
class LineRefund:
    """A refund of an order line: the line's refunded total after it, the cause its
    commission reversal is keyed by, and the refund's reference."""

    total_minor: int
    cause: str
    reference: str


class Postings:
    """The entries and wallets one command changes, saved together."""

    def __init__(self, app: "LedgerService", at: datetime | None = None) -> None:
        self.app = app
        self.at = at  # when the entries are dated: the command's `now`, else the clock
        self.entries: list[JournalEntry] = []
        self.wallets: dict[str, Wallet] = {}

    def post(self, cause: str, kind: str, lines: list[dict[str, Any]], memo: str) -> None:
        entry = JournalEntry.post(cause, kind, self.app.settings.currency, lines, memo,
                                  self.at or self.app.clock())
        self.entries.append(entry)
        owners = {owner[0] for line in lines if (owner := parse_account(line["account"]))}
        for distributor_id in sorted(owners):
            self.wallet(distributor_id).apply_entry(str(entry.id), lines)

    def wallet(self, distributor_id: str) -> Wallet:
        if distributor_id not in self.wallets:
            self.wallets[distributor_id] = self.app.wallet(distributor_id)
        return self.wallets[distributor_id]

    def aggregates(self) -> list[Any]:
        return [*self.entries, *self.wallets.values()]


class LedgerService(DistributorService):
    def wallet(self, distributor_id: str) -> Wallet:
        return (self.find(Wallet.create_id(distributor_id))
                or Wallet(distributor_id=distributor_id, currency=self.settings.currency))

    # -- commissions ----------------------------------------------------------------

    def accrue_commission(self, order_id: str, line_no: int, sku: str, quantity: int,
                          net_minor: int, seller_id: str, self_purchase: bool = False
                          ) -> dict[str, Any]:
        """Accrue the commission of one paid line (once: a repeat changes nothing), with
        the network and rules as they stand now."""
        if self.exists(LineCommission.create_id(order_id, line_no)):
            return {"order_id": order_id, "line_no": line_no, "accrued": False,
                    "position": None}
        seller = self.distributor(seller_id)
        upline = self.distributor(seller.upline_id) if seller.upline_id else None
        line = PaidLine(order_id=order_id, line_no=line_no, sku=sku, quantity=quantity,
                        net_minor=net_minor, currency=self.settings.currency)
        postings = Postings(self)
        commission, accruals, forfeits = self._accrue(
            line, _beneficiary(seller), _beneficiary(upline) if upline else None,
            self.commission_rules().rule_for(sku), self_purchase, postings)
        return {"order_id": order_id, "line_no": line_no, "accrued": True,
                "accruals": [asdict(a) for a in accruals],
                "forfeits": [asdict(f) for f in forfeits],
                "position": self.record(commission, *postings.aggregates())}

    def accrue_from_basis(self, basis: AccrualBasis, reversed_by: str | None = None,
                          refunds: Mapping[int, Sequence[LineRefund]] | None = None
                          ) -> dict[str, Any]:
        """Accrue every commissionable line of a paid order from the basis recorded at
        payment (the network and rules as they stood then), in one save; lines already
        accrued are skipped, so a repeat changes nothing. `refunds`: line number -> the
        line's refunds so far, in order, whose reversals found no commission to reverse
        (a payment retried after them): each new accrual is reversed by them in the same
        save, each under its own cause and reference, as they would have done.
        `reversed_by`: the order has been cancelled since (cause of that reversal), so
        each new accrual is then reversed in full, as the cancellation would have done."""
        postings = Postings(self)
        commissions: list[LineCommission] = []
        for line in basis.lines:
            if line.net_minor <= 0 or \
                    self.exists(LineCommission.create_id(basis.order_id, line.line_no)):
                continue
            commission, _, _ = self._accrue(line, basis.seller, basis.upline,
                                            basis.rule_for(line.sku), basis.self_purchase,
                                            postings)
            for refund in (refunds or {}).get(line.line_no, ()):
                if refund.total_minor > commission.refunded_minor:
                    reversals = commission.reverse(refund.total_minor, self.clock(),
                                                   refund.cause, refund.reference)
                    if reversals is not None:
                        self._post_reversals(commission, reversals, refund.total_minor,
                                             postings)
            if reversed_by is not None:
                self._reverse_rest(commission, reversed_by, postings)
            commissions.append(commission)
        return {"order_id": basis.order_id,
                "accrued": [c.line_no for c in commissions],
                "position": self.record(*commissions, *postings.aggregates())
                if commissions else None}

    def _accrue(self, line: PaidLine, seller: Beneficiary, upline: Beneficiary | None,
                rule: RuleTerms, self_purchase: bool, postings: Postings
                ) -> tuple[LineCommission, list[Accrual], list[Forfeit]]:
        accruals, forfeits = split_commission(line, seller, upline, rule, self_purchase,
                                              self.settings.self_purchase_commission)
        commission = LineCommission.accrue(
            line.order_id, line.line_no, line.sku, line.net_minor, self.settings.currency,
            [asdict(a) for a in accruals], [asdict(f) for f in forfeits], self.clock())
        for a in accruals:
            postings.post(_cause(commission, a.level, "accrued"), "accrual",
                          accrual_lines(a.distributor_id, a.amount_minor),
                          f"level {a.level} commission on {line.order_id} line "
                          f"{line.line_no}")
        return commission, accruals, forfeits

    def line_commission(self, order_id: str, line_no: int) -> LineCommission:
        return self.load(LineCommission.create_id(order_id, line_no),
                         f"commission of {order_id} line {line_no}")

    def mature_commission(self, order_id: str, line_no: int, cause: str | None = None,
                          at: datetime | None = None) -> dict[str, Any]:
        """Pending -> available. A repeat with the same `cause` is answered "already
        done" (position None); without a cause a repeat is refused."""
        commission = self.line_commission(order_id, line_no)
        postings = Postings(self, at)
        if not self._mature(commission, cause, postings):
            return {"order_id": order_id, "line_no": line_no, "matured": True,
                    "position": None}
        return {"order_id": order_id, "line_no": line_no, "matured": True,
                "position": self.record(commission, *postings.aggregates())}

    def mature_order_commission(self, order_id: str, line_nos: list[int], cause: str,
                                at: datetime | None = None) -> dict[str, Any]:
        """Mature the commission of the order's lines in one save (the freeze period
        after completion has ended: the caller checked). Lines without commission or
        matured already, by any cause, are skipped: a repeat changes nothing."""
        postings = Postings(self, at)
        changed = []
        for line_no in line_nos:
            commission = self.find(LineCommission.create_id(order_id, line_no))
            if commission is not None and not commission.matured and \
                    self._mature(commission, cause, postings):
                changed.append(commission)
        return {"order_id": order_id, "matured": [c.line_no for c in changed],
                "position": self.record(*changed, *postings.aggregates())
                if changed else None}

    def _mature(self, commission: LineCommission, cause: str | None,
                postings: Postings) -> bool:
        moved = commission.mature(postings.at or self.clock(), cause)
        if moved is None:
            return False
        for m in moved:
            postings.post(_cause(commission, m["level"], "matured"), "maturity",
                          maturity_lines(m["distributor_id"], m["amount_minor"]),
                          f"commission on {commission.order_id} line {commission.line_no} "
                          "matured")
        return True

    def reverse_commission(self, order_id: str, line_no: int, refunded_total_minor: int,
                           cause: str | None = None,
                           refund_reference: str | None = None) -> dict[str, Any]:
        """The line has been refunded `refunded_total_minor` in all so far (the last
        refund under `refund_reference`). A repeat with the same `cause` is answered
        "already done" (no reversals, position None)."""
        commission = self.line_commission(order_id, line_no)
        postings = Postings(self)
        reversals = commission.reverse(refunded_total_minor, self.clock(), cause,
                                       refund_reference)
        if reversals is None:
            return {"order_id": order_id, "line_no": line_no, "reversals": [],
                    "position": None}
        self._post_reversals(commission, reversals, refunded_total_minor, postings)
        return {"order_id": order_id, "line_no": line_no, "reversals": reversals,
                "position": self.record(commission, *postings.aggregates())}

    def reverse_order_commission(self, order_id: str, line_nos: list[int],
                                 cause: str) -> dict[str, Any]:
        """Reverse all that is left of the commission of the order's lines (a
        cancellation after payment): pending is reversed, matured is clawed back. Lines
        without commission, fully reversed, or already reversed by `cause` are skipped."""
        postings = Postings(self)
        changed = []
        for line_no in line_nos:
            commission = self.find(LineCommission.create_id(order_id, line_no))
            if commission is not None and self._reverse_rest(commission, cause, postings):
                changed.append(commission)
        return {"order_id": order_id, "reversed": [c.line_no for c in changed],
                "position": self.record(*changed, *postings.aggregates())
                if changed else None}

    def _reverse_rest(self, commission: LineCommission, cause: str,
                      postings: Postings) -> bool:
        reversals = commission.reverse_rest(self.clock(), cause)
        if reversals is None:
            return False
        self._post_reversals(commission, reversals, commission.net_minor, postings)
        return True

    @staticmethod
    def _post_reversals(commission: LineCommission, reversals: list[dict[str, Any]],
                        refunded_total_minor: int, postings: Postings) -> None:
        order_id, line_no = commission.order_id, commission.line_no
        for r in reversals:
            postings.post(
                _cause(commission, r["level"], f"reversed:{refunded_total_minor}"),
                REVERSAL_KIND[r["source"]],
                REVERSAL_LINES[r["source"]](r["distributor_id"], r["amount_minor"]),
                f"refund on {order_id} line {line_no}: {refunded_total_minor} in all")

    # -- withdrawals ----------------------------------------------------------------

    def withdrawal(self, withdrawal_id: str) -> Withdrawal:
        return self.load(Withdrawal.create_id(withdrawal_id), f"withdrawal {withdrawal_id}",
                         withdrawal_id=withdrawal_id)

    def request_withdrawal(self, distributor_id: str, amount_minor: int,
                           withdrawal_id: str | None = None) -> dict[str, Any]:
        distributor = self.distributor(distributor_id)
        if distributor.status != "active":
            raise InvalidTransition(f"distributor {distributor_id} is {distributor.status}; "
                                    "only an active distributor can withdraw")
        withdrawal_id = withdrawal_id or self._new_id("W")
        postings = Postings(self)
        postings.wallet(distributor_id).check_withdrawal(
            amount_minor, self.settings.min_withdrawal_minor)
        withdrawal = Withdrawal.request(withdrawal_id, distributor_id, amount_minor,
                                        self.settings.currency, self.clock())
        postings.post(f"withdrawal:{withdrawal_id}:requested", "withdrawal_request",
                      withdrawal_request_lines(distributor_id, amount_minor),
                      f"withdrawal {withdrawal_id} requested")
        return {**withdrawal_view(withdrawal),
                "position": self.record(withdrawal, *postings.aggregates())}

    def approve_withdrawal(self, withdrawal_id: str, payment_reference: str) -> dict[str, Any]:
        """Pay it (money leaves: withdrawing -> cash), or above the four-eyes threshold
        record the first approval only; a reference pays one withdrawal, once."""
        withdrawal = self.withdrawal(withdrawal_id)
        withdrawal.approve(current_actor(), payment_reference,
                           self.settings.four_eyes_min_minor,
                           self.wallet(withdrawal.distributor_id).available, self.clock())
        reference = withdrawal.first_approval["reference"] if withdrawal.first_approval \
            else payment_reference.strip()
        if self.exists(PayoutReference.create_id(reference)):
            raise Duplicate(f"payment reference {reference} was already used",
                            payment_reference=reference)
        if withdrawal.status != "paid":
            return Pending(withdrawal_view(withdrawal), position=self.record(withdrawal))
        postings = Postings(self)
        postings.post(f"withdrawal:{withdrawal_id}:paid", "withdrawal_paid",
                      withdrawal_paid_lines(withdrawal.distributor_id, withdrawal.amount_minor),
                      f"withdrawal {withdrawal_id} paid, reference {reference}")
        used = PayoutReference(payment_reference=reference, withdrawal_id=withdrawal_id)
        return {**withdrawal_view(withdrawal),
                "position": self.record(withdrawal, used, *postings.aggregates())}

    def reject_withdrawal(self, withdrawal_id: str, reason: str) -> dict[str, Any]:
        withdrawal = self.withdrawal(withdrawal_id)
        withdrawal.reject(reason, self.clock())
        postings = Postings(self)
        postings.post(f"withdrawal:{withdrawal_id}:rejected", "withdrawal_rejected",
                      withdrawal_rejected_lines(withdrawal.distributor_id,
                                                withdrawal.amount_minor),
                      f"withdrawal {withdrawal_id} rejected: {reason}")
        return {**withdrawal_view(withdrawal),
                "position": self.record(withdrawal, *postings.aggregates())}


def withdrawal_view(w: Withdrawal) -> dict[str, Any]:
    return {"withdrawal_id": w.withdrawal_id, "distributor_id": w.distributor_id,
            "amount": {"amount": w.amount_minor, "currency": w.currency},
            "status": w.status, "payment_reference": w.payment_reference,
            "approvals": approvals_of(w)}


def approvals_of(w: Withdrawal) -> list[str]:
    """Who approved it so far: the first of two, or the one or two who paid it."""
    if w.approved_by:
        return list(w.approved_by)
    return [w.first_approval["actor"]] if w.first_approval else []


def _beneficiary(d: Any) -> Beneficiary:
    return Beneficiary(distributor_id=d.distributor_id, status=d.status, upline_id=d.upline_id)


def _cause(commission: LineCommission, level: int, what: str) -> str:
    return f"commission:{commission.order_id}:{commission.line_no}:L{level}:{what}"


