"""Four eyes: money above a threshold leaves only with two different people.

A withdrawal's payout and an after-sales refund share the rule. At or below
`four_eyes_min_minor` one approval moves the money. Above it the first approval records
what is to be paid and by whom, and only a second approval, by someone else, for the very
same amount and reference, moves it; the same person approving twice is refused. Both
names end up on the events.
"""
from __future__ import annotations

from typing import Any

from domain.errors import DomainError

AWAITING = "awaiting_second_approval"


class SecondApproverRequired(DomainError):
    code = "second_approver_required"


class ApprovalMismatch(DomainError):
    """The second approval names another amount or reference than the first: the two
    people would not be agreeing on the same payment."""

    code = "approval_mismatch"


def needs_two(amount_minor: int, four_eyes_min_minor: int) -> bool:
    return amount_minor > four_eyes_min_minor


def first_approval(actor: str, amount_minor: int, reference: str) -> dict[str, Any]:
    return {"actor": actor, "amount_minor": amount_minor, "reference": reference}


def check_second(first: dict[str, Any], actor: str, amount_minor: int,
                 reference: str, what: str) -> None:
    """Refused unless `actor` is not the first approver and agrees with the first."""
    if actor == first["actor"]:
        raise SecondApproverRequired(
            f"{what} was approved by {actor}; a different person must approve it too",
            first_approver=actor)
    if amount_minor != first["amount_minor"] or reference != first["reference"]:
        raise ApprovalMismatch(
            f"{what} was approved for {first['amount_minor']} with reference "
            f"{first['reference']!r}; the second approval must name the same",
            amount=first["amount_minor"], reference=first["reference"])
