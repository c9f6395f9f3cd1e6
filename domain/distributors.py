"""Distributors, the phone and referral-code indexes, and customer bindings."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from uuid import UUID

import phonenumbers
from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, Duplicate, InvalidCommand, InvalidTransition
from domain.ids import natural_id



class ReferrerInactive(DomainError):
    code = "referrer_inactive"


class CycleRefused(DomainError):
    code = "cycle"


def normalize_phone(phone: str) -> str:
    """A phone number in E.164 (+86 and 11 digits for a mainland mobile), read as the
    telephone plan says it can exist (the `phonenumbers` library's metadata): a number
    without a country code is a mainland one; a number no plan has is refused."""
    compact = re.sub(r"[\s\-()]", "", phone)
    try:
        number = phonenumbers.parse(compact, "CN")
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise InvalidCommand("phone must be a mainland mobile number (11 digits, +86 "
                             "optional) or an international number in E.164 (+ country "
                             "code and number) that exists in its country's plan",
                             field="phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _reason(reason: str) -> None:
    if not reason.strip():
        raise InvalidCommand("a reason is required", field="reason")


class Distributor(Aggregate):
    @staticmethod
    def create_id(distributor_id: str) -> UUID:
        return natural_id("distributor", distributor_id)

    @classmethod
    def apply_for(cls, distributor_id: str, name: str, phone: str, referrer_id: str | None,
                  applied_at: datetime) -> "Distributor":
        if not name.strip():
            raise InvalidCommand("name must not be blank", field="name")
        return cls(distributor_id=distributor_id, name=name.strip(),
                   phone=normalize_phone(phone), referrer_id=referrer_id,
                   applied_at=applied_at)

    @event("DistributorApplied")
    def __init__(self, distributor_id: str, name: str, phone: str, referrer_id: str | None,
                 applied_at: datetime) -> None:
        self.distributor_id = distributor_id
        self.name = name
        self.phone = phone
        self.referrer_id = referrer_id
        self.applied_at = applied_at
        self.status = "pending"
        self.referral_code: str | None = None
        self.upline_id: str | None = None

    def _require(self, *statuses: str) -> None:
        if self.status not in statuses:
            raise InvalidTransition(
                f"distributor {self.distributor_id} is {self.status}; this needs "
                f"{' or '.join(statuses)}", status=self.status)

    def approve(self, referral_code: str, referrer_status: str | None, at: datetime) -> None:
        self._require("pending")
        if self.referrer_id is not None and referrer_status != "active":
            raise ReferrerInactive(
                f"the referrer {self.referrer_id} is {referrer_status or 'unknown'}, not "
                "active; reinstate the referrer or reject the application",
                referrer_id=self.referrer_id)
        self._approved(referral_code=referral_code, upline_id=self.referrer_id, at=at)

    @event("DistributorApproved")
    def _approved(self, referral_code: str, upline_id: str | None, at: datetime) -> None:
        self.status = "active"
        self.referral_code = referral_code
        self.upline_id = upline_id

    def reject(self, reason: str, at: datetime) -> None:
        self._require("pending")
        _reason(reason)
        self._rejected(reason=reason, at=at)

    @event("DistributorRejected")
    def _rejected(self, reason: str, at: datetime) -> None:
        self.status = "rejected"

    def suspend(self, reason: str, at: datetime) -> None:
        self._require("active")
        _reason(reason)
        self._suspended(reason=reason, at=at)

    @event("DistributorSuspended")
    def _suspended(self, reason: str, at: datetime) -> None:
        self.status = "suspended"

    def reinstate(self, reason: str, at: datetime) -> None:
        self._require("suspended")
        _reason(reason)
        self._reinstated(reason=reason, at=at)

    @event("DistributorReinstated")
    def _reinstated(self, reason: str, at: datetime) -> None:
        self.status = "active"

    def change_upline(self, new_upline_id: str | None, reason: str,
                      new_upline_ancestors: list[str], new_upline_status: str | None,
                      at: datetime) -> None:
        """`new_upline_ancestors`: the chain of uplines above the new upline."""
        self._require("active", "suspended")
        _reason(reason)
        if new_upline_id == self.upline_id:
            raise InvalidTransition(f"{self.distributor_id}'s upline is already "
                                    f"{new_upline_id}")
        if new_upline_id is not None:
            if new_upline_id == self.distributor_id or \
                    self.distributor_id in new_upline_ancestors:
                raise CycleRefused(f"{new_upline_id} is {self.distributor_id} or below it; "
                                   "the network would loop", upline_id=new_upline_id)
            if new_upline_status not in ("active", "suspended"):
                raise InvalidTransition(f"{new_upline_id} is {new_upline_status}, not an "
                                        "approved distributor", upline_id=new_upline_id)
        self._upline_changed(old_upline_id=self.upline_id, new_upline_id=new_upline_id,
                             reason=reason, at=at)

    @event("UplineChanged")
    def _upline_changed(self, old_upline_id: str | None, new_upline_id: str | None,
                        reason: str, at: datetime) -> None:
        self.upline_id = new_upline_id


class PhoneClaim(Aggregate):
    """Index: a phone number holds at most one live application or distributor. It is
    keyed by `phone_key`, which the application derives from the normalised number (a
    keyed digest when personal data is encrypted, so ids do not give numbers away)."""

    @staticmethod
    def create_id(phone_key: str) -> UUID:
        return natural_id("phone", phone_key)

    @classmethod
    def claim(cls, phone_key: str, distributor_id: str) -> "PhoneClaim":
        return cls(phone_key=phone_key, distributor_id=distributor_id)

    @event("PhoneClaimed")
    def __init__(self, phone_key: str, distributor_id: str) -> None:
        self.phone_key = phone_key
        self.distributor_id = distributor_id
        self.live = True

    def release(self) -> None:
        if not self.live:
            raise InvalidTransition("this phone number is not held")
        self._released()

    @event("PhoneReleased")
    def _released(self) -> None:
        self.live = False

    def reclaim(self, distributor_id: str) -> None:
        if self.live:
            raise Duplicate("this phone number already belongs to a distributor or a "
                            "pending application", field="phone")
        self._reclaimed(distributor_id=distributor_id)

    @event("PhoneReclaimed")
    def _reclaimed(self, distributor_id: str) -> None:
        self.distributor_id = distributor_id
        self.live = True


class ReferralCode(Aggregate):
    """Index: referral code -> distributor (codes are unique by construction)."""

    @staticmethod
    def create_id(code: str) -> UUID:
        return natural_id("referral_code", code.upper())

    @event("ReferralCodeIssued")
    def __init__(self, code: str, distributor_id: str) -> None:
        self.code = code.upper()
        self.distributor_id = distributor_id


class CustomerBinding(Aggregate):
    """A customer is bound to the distributor that first referred them, for good
    (binding_days = 0) or for N days, after which the next referrer may bind them."""

    @staticmethod
    def create_id(customer_id: str) -> UUID:
        return natural_id("binding", customer_id)

    @classmethod
    def bind(cls, customer_id: str, distributor_id: str, at: datetime,
             binding_days: int) -> "CustomerBinding":
        return cls(customer_id=customer_id, distributor_id=distributor_id, bound_at=at,
                   expires_at=_expiry(at, binding_days))

    @event("CustomerBound")
    def __init__(self, customer_id: str, distributor_id: str, bound_at: datetime,
                 expires_at: datetime | None) -> None:
        self.customer_id = customer_id
        self.distributor_id = distributor_id
        self.bound_at = bound_at
        self.expires_at = expires_at

    def is_live(self, at: datetime) -> bool:
        return self.expires_at is None or at < self.expires_at

    def rebind(self, distributor_id: str, at: datetime, binding_days: int) -> None:
        if self.is_live(at):
            raise InvalidTransition(f"customer {self.customer_id} is bound to "
                                    f"{self.distributor_id} until {self.expires_at}")
        self._rebound(distributor_id=distributor_id, bound_at=at,
                      expires_at=_expiry(at, binding_days))

    @event("CustomerRebound")
    def _rebound(self, distributor_id: str, bound_at: datetime,
                 expires_at: datetime | None) -> None:
        self.distributor_id = distributor_id
        self.bound_at = bound_at
        self.expires_at = expires_at


def _expiry(at: datetime, binding_days: int) -> datetime | None:
    return None if binding_days <= 0 else at + timedelta(days=binding_days)


def attribute(named_distributor_id: str | None,
              binding_live_distributor_id: str | None) -> str | None:
    """The distributor an order credits: the one it names, else the live binding's."""
    return named_distributor_id or binding_live_distributor_id


def should_bind(binding_exists: bool, binding_live: bool, credited: str | None) -> bool:
    """Bind when someone is credited and no live binding exists yet."""
    return credited is not None and not (binding_exists and binding_live)
