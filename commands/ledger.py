"""Commission accrual, maturity and reversal, and withdrawals: every money movement is a
balanced journal entry, and each distributor's wallet (the write-side balance the
withdrawal rules need) moves in the same atomic save."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

from commands.distributors import DistributorService
from domain.accruals import LineCommission
from domain.commissions import Beneficiary, PaidLine, split_commission
from domain.errors import InvalidTransition
from domain.ledger import (JournalEntry, Wallet, Withdrawal, accrual_lines, clawback_lines,
                           maturity_lines, parse_account, reverse_pending_lines,
                           withdrawal_paid_lines, withdrawal_rejected_lines,
                           withdrawal_request_lines)

REVERSAL_LINES: dict[str, Callable[[str, int], list[dict[str, Any]]]] = {
    "pending": reverse_pending_lines, "available": clawback_lines}
REVERSAL_KIND = {"pending": "reversal", "available": "clawback"}


class Postings:
    """The entries and wallets one command changes, saved together."""

    def __init__(self, app: "LedgerService") -> None:
        self.app = app
        self.entries: list[JournalEntry] = []
        self.wallets: dict[str, Wallet] = {}

    def post(self, cause: str, kind: str, lines: list[dict[str, Any]], memo: str) -> None:
        entry = JournalEntry.post(cause, kind, self.app.settings.currency, lines, memo,
                                  self.app.clock())
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
        """Accrue the commission of one paid line (once: a repeat changes nothing)."""
        if self.exists(LineCommission.create_id(order_id, line_no)):
            return {"order_id": order_id, "line_no": line_no, "accrued": False,
                    "position": None}
        seller = self.distributor(seller_id)
        upline = self.distributor(seller.upline_id) if seller.upline_id else None
        line = PaidLine(order_id=order_id, line_no=line_no, sku=sku, quantity=quantity,
                        net_minor=net_minor, currency=self.settings.currency)
        accruals, forfeits = split_commission(
            line, _beneficiary(seller), _beneficiary(upline) if upline else None,
            self.commission_rules().rule_for(sku), self_purchase,
            self.settings.self_purchase_commission)
        commission = LineCommission.accrue(
            order_id, line_no, sku, net_minor, self.settings.currency,
            [asdict(a) for a in accruals], [asdict(f) for f in forfeits], self.clock())
        postings = Postings(self)
        for a in accruals:
            postings.post(_cause(commission, a.level, "accrued"), "accrual",
                          accrual_lines(a.distributor_id, a.amount_minor),
                          f"level {a.level} commission on {order_id} line {line_no}")
        return {"order_id": order_id, "line_no": line_no, "accrued": True,
                "accruals": [asdict(a) for a in accruals],
                "forfeits": [asdict(f) for f in forfeits],
                "position": self.record(commission, *postings.aggregates())}

    def line_commission(self, order_id: str, line_no: int) -> LineCommission:
        return self.load(LineCommission.create_id(order_id, line_no),
                         f"commission of {order_id} line {line_no}")

    def mature_commission(self, order_id: str, line_no: int) -> dict[str, Any]:
        commission = self.line_commission(order_id, line_no)
        postings = Postings(self)
        for moved in commission.mature(self.clock()):
            postings.post(_cause(commission, moved["level"], "matured"), "maturity",
                          maturity_lines(moved["distributor_id"], moved["amount_minor"]),
                          f"commission on {order_id} line {line_no} matured")
        return {"order_id": order_id, "line_no": line_no, "matured": True,
                "position": self.record(commission, *postings.aggregates())}

    def reverse_commission(self, order_id: str, line_no: int,
                           refunded_total_minor: int) -> dict[str, Any]:
        """The line has been refunded `refunded_total_minor` in all so far."""
        commission = self.line_commission(order_id, line_no)
        postings = Postings(self)
        reversals = commission.reverse(refunded_total_minor, self.clock())
        for r in reversals:
            postings.post(
                _cause(commission, r["level"], f"reversed:{refunded_total_minor}"),
                REVERSAL_KIND[r["source"]],
                REVERSAL_LINES[r["source"]](r["distributor_id"], r["amount_minor"]),
                f"refund on {order_id} line {line_no}: {refunded_total_minor} in all")
        return {"order_id": order_id, "line_no": line_no, "reversals": reversals,
                "position": self.record(commission, *postings.aggregates())}

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
        withdrawal = self.withdrawal(withdrawal_id)
        withdrawal.mark_paid(payment_reference, self.clock())
        postings = Postings(self)
        postings.post(f"withdrawal:{withdrawal_id}:paid", "withdrawal_paid",
                      withdrawal_paid_lines(withdrawal.distributor_id, withdrawal.amount_minor),
                      f"withdrawal {withdrawal_id} paid, reference {payment_reference}")
        return {**withdrawal_view(withdrawal),
                "position": self.record(withdrawal, *postings.aggregates())}

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
            "status": w.status, "payment_reference": w.payment_reference}


def _beneficiary(d: Any) -> Beneficiary:
    return Beneficiary(distributor_id=d.distributor_id, status=d.status, upline_id=d.upline_id)


def _cause(commission: LineCommission, level: int, what: str) -> str:
    return f"commission:{commission.order_id}:{commission.line_no}:L{level}:{what}"


