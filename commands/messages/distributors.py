"""Distributors and the ledger: applications, the network, commission rules,
withdrawals."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.messages.base import Command


@dataclass(frozen=True)
class ApplyDistributor(Command):
    status = 201
    applicant_name: str  # not `name`: that is the command's own name
    phone: str
    referral_code: str | None = None  # the upline's code
    distributor_id: str | None = None  # None: a new id

    def handle(self, app: Any) -> dict[str, Any]:
        return app.apply_distributor(name=self.applicant_name, phone=self.phone,
                                     referral_code=self.referral_code,
                                     distributor_id=self.distributor_id)


@dataclass(frozen=True)
class ApproveDistributor(Command):
    distributor_id: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.approve_distributor(self.distributor_id)


@dataclass(frozen=True)
class RejectDistributor(Command):
    distributor_id: str
    reason: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.reject_distributor(self.distributor_id, self.reason)


@dataclass(frozen=True)
class SuspendDistributor(Command):
    distributor_id: str
    reason: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.suspend_distributor(self.distributor_id, self.reason)


@dataclass(frozen=True)
class ReinstateDistributor(Command):
    distributor_id: str
    reason: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.reinstate_distributor(self.distributor_id, self.reason)


@dataclass(frozen=True)
class ChangeUpline(Command):
    distributor_id: str
    upline_id: str | None  # None: no upline any more
    reason: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.change_upline(self.distributor_id, self.upline_id, self.reason)


@dataclass(frozen=True)
class SetCommissionRule(Command):
    status = 201
    sku: str | None  # None: the default rule
    kind: str  # "rate" (levels in bp) or "fixed" (levels in minor units)
    level1: int
    level2: int

    def handle(self, app: Any) -> dict[str, Any]:
        return app.set_commission_rule(self.sku, self.kind, self.level1, self.level2)


@dataclass(frozen=True)
class RequestWithdrawal(Command):
    status = 201
    distributor_id: str
    amount_minor: int
    withdrawal_id: str | None = None  # None: a new id

    def handle(self, app: Any) -> dict[str, Any]:
        return app.request_withdrawal(self.distributor_id, self.amount_minor,
                                      self.withdrawal_id)


@dataclass(frozen=True)
class ApproveWithdrawal(Command):
    withdrawal_id: str
    payment_reference: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.approve_withdrawal(self.withdrawal_id, self.payment_reference)


@dataclass(frozen=True)
class RejectWithdrawal(Command):
    withdrawal_id: str
    reason: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.reject_withdrawal(self.withdrawal_id, self.reason)
