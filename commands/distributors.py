"""Distributor network commands: applications, review, suspension, re-parenting, customer
binding, and commission rules."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from commands.app import CoreApp
from commands.views import rule_view
from domain.catalog import Product
from domain.commissions import CommissionRules
from domain.distributors import (CustomerBinding, Distributor, PhoneClaim, ReferralCode,
                                 attribute, normalize_phone, should_bind)
from domain.errors import Duplicate, DistributorInactive, NotFound

# Crockford-style alphabet: no 0/O, 1/I/L confusion when a code is read aloud or typed.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8  # 31^8 ≈ 8.5e11 codes: short to type, far too many to guess


def distributor_view(d: Distributor) -> dict[str, Any]:
    return {"distributor_id": d.distributor_id, "name": d.name, "status": d.status,
            "referral_code": d.referral_code, "upline_id": d.upline_id}


class DistributorService(CoreApp):
    def distributor(self, distributor_id: str) -> Distributor:
        return self.load(Distributor.create_id(distributor_id),
                         f"distributor {distributor_id}", distributor_id=distributor_id)

    def apply_distributor(self, name: str, phone: str, referral_code: str | None = None,
                          distributor_id: str | None = None) -> dict[str, Any]:
        distributor_id = distributor_id or self._new_id("D")
        if self.exists(Distributor.create_id(distributor_id)):
            raise Duplicate(f"distributor {distributor_id} already exists",
                            distributor_id=distributor_id)
        referrer_id = self._referrer(referral_code) if referral_code else None
        claim = self._claim_phone(self._phone_key(phone), distributor_id)
        applicant = Distributor.apply_for(distributor_id, name, phone, referrer_id,
                                          self.clock())
        return {"distributor_id": distributor_id, "status": applicant.status,
                "position": self.record(applicant, claim)}

    def _referrer(self, referral_code: str) -> str:
        code = self.find(ReferralCode.create_id(referral_code))
        if code is None:
            raise NotFound(f"no distributor has referral code {referral_code}",
                           referral_code=referral_code)
        return code.distributor_id

    def _phone_key(self, phone: str) -> str:
        """The phone index key: the number itself, or an HMAC of it under the cipher key
        when personal data is encrypted (a plain hash of a phone number is reversible by
        trying every number)."""
        normal = normalize_phone(phone)
        if not self.settings.cipher_key:
            return normal
        key = base64.b64decode(self.settings.cipher_key)
        return hmac.new(key, normal.encode(), hashlib.sha256).hexdigest()

    def _claim_phone(self, phone_key: str, distributor_id: str) -> PhoneClaim:
        claim = self.find(PhoneClaim.create_id(phone_key))
        if claim is None:
            return PhoneClaim.claim(phone_key, distributor_id)
        if claim.live:
            raise Duplicate("this phone number already belongs to a distributor or a "
                            "pending application", field="phone")
        claim.reclaim(distributor_id)
        return claim

    def approve_distributor(self, distributor_id: str) -> dict[str, Any]:
        applicant = self.distributor(distributor_id)
        referrer_status = (self.distributor(applicant.referrer_id).status
                           if applicant.referrer_id else None)
        code = self._new_referral_code(distributor_id)
        applicant.approve(code.code, referrer_status, self.clock())
        return {**distributor_view(applicant), "position": self.record(applicant, code)}

    def _new_referral_code(self, distributor_id: str) -> ReferralCode:
        while True:  # a collision is a one-in-billions event; just draw again
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            if not self.exists(ReferralCode.create_id(code)):
                return ReferralCode(code=code, distributor_id=distributor_id)

    def reject_distributor(self, distributor_id: str, reason: str) -> dict[str, Any]:
        applicant = self.distributor(distributor_id)
        applicant.reject(reason, self.clock())
        claim = self.load(PhoneClaim.create_id(self._phone_key(applicant.phone)),
                          "phone claim")
        claim.release()  # the phone may apply again
        return {**distributor_view(applicant), "position": self.record(applicant, claim)}

    def suspend_distributor(self, distributor_id: str, reason: str) -> dict[str, Any]:
        distributor = self.distributor(distributor_id)
        distributor.suspend(reason, self.clock())
        return {**distributor_view(distributor), "position": self.record(distributor)}

    def reinstate_distributor(self, distributor_id: str, reason: str) -> dict[str, Any]:
        distributor = self.distributor(distributor_id)
        distributor.reinstate(reason, self.clock())
        return {**distributor_view(distributor), "position": self.record(distributor)}

    def change_upline(self, distributor_id: str, upline_id: str | None,
                      reason: str) -> dict[str, Any]:
        distributor = self.distributor(distributor_id)
        upline = self.distributor(upline_id) if upline_id else None
        distributor.change_upline(upline_id, reason, self._ancestors(upline),
                                  upline.status if upline else None, self.clock())
        return {**distributor_view(distributor), "position": self.record(distributor)}

    def _ancestors(self, start: Distributor | None) -> list[str]:
        """The chain of uplines above `start` (stops at a repeat: history is never trusted
        to be acyclic just because the rules say so)."""
        chain: list[str] = []
        current = start
        while current is not None and current.upline_id and current.upline_id not in chain:
            chain.append(current.upline_id)
            current = self.distributor(current.upline_id)
        return chain

    # -- customers ------------------------------------------------------------------

    def attribute_order(self, customer_id: str, distributor_id: str | None = None,
                        referral_code: str | None = None) -> dict[str, Any]:
        """Which distributor an order of `customer_id` credits: the one it names (by id or
        referral code), else the customer's live binding. Binds the customer the first
        time (or again once an N-day binding has lapsed) to an active distributor."""
        credited, binding = self.attribution(customer_id, distributor_id, referral_code)
        return {"customer_id": customer_id, "distributor_id": credited,
                "position": self.record(binding) if binding is not None else None}

    def attribution(self, customer_id: str, distributor_id: str | None = None,
                    referral_code: str | None = None, require_active: bool = False
                    ) -> tuple[str | None, CustomerBinding | None]:
        """The rule of `attribute_order`, without saving: the distributor credited and
        the customer's binding when it changes (to save with the caller's aggregates),
        else None. `require_active`: a named distributor that is not active is refused
        (DistributorInactive) instead of credited."""
        named = distributor_id or (self._referrer(referral_code) if referral_code else None)
        if named is not None:
            status = self.distributor(named).status
            if require_active and status != "active":
                raise DistributorInactive(f"distributor {named} is {status}, not active",
                                          distributor_id=named, status=status)
        now = self.clock()
        binding = self.find(CustomerBinding.create_id(customer_id))
        live = binding is not None and binding.is_live(now)
        credited = attribute(named, binding.distributor_id if live else None)
        if not should_bind(binding is not None, live, credited) or \
                self.distributor(credited).status != "active":
            return credited, None
        days = self.settings.binding_days
        if binding is None:
            return credited, CustomerBinding.bind(customer_id, credited, now, days)
        binding.rebind(credited, now, days)
        return credited, binding

    # -- commission rules -------------------------------------------------------------

    def commission_rules(self) -> CommissionRules:
        return self.find(CommissionRules.create_id()) or CommissionRules()

    def set_commission_rule(self, sku: str | None, kind: str, level1: int,
                            level2: int) -> dict[str, Any]:
        rules = self.commission_rules()
        unit_price = None
        if sku is not None:
            unit_price = self.load(Product.create_id(sku), f"product {sku}",
                                   sku=sku).price_minor
        rules.set_rule(sku, kind, level1, level2, unit_price)
        terms = rules.rule_for(sku)
        return {**rule_view(sku, terms.kind, terms.level1, terms.level2, terms.version),
                "position": self.record(rules)}
