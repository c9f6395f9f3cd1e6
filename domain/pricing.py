"""An order before it is placed (pure): the checks of its lines, customer and address,
and its money from catalog prices, promotions and the shipping fee.

Per line: gross = quantity × unit price; discount = its share of the order's discount
(domain.promotions); net = gross − discount. For the order: subtotal = Σ gross,
discount = Σ line discounts, total = Σ line nets + shipping fee, always. The shipping fee
is waived when the goods' net (subtotal − discount) reaches the free-shipping minimum;
it is never part of any line, so it is never a commission base.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from domain.distributors import normalize_phone
from domain.errors import InvalidCommand, ProductUnavailable
from domain.promotions import CouponTerms, SaleLine, ThresholdTerms, compute_discount

MAX_LINE_QUANTITY = 10_000
ADDRESS_FIELDS = ("region", "city", "line1")


@dataclass(frozen=True)
class CatalogEntry:
    """A product as the catalog has it at the moment of the order."""

    sku: str
    name: str
    price_minor: int
    listed: bool = True


@dataclass(frozen=True)
class ShippingFeeRule:
    fee_minor: int = 0
    free_shipping_min_minor: int | None = None  # None: never waived

    def fee_for(self, goods_net_minor: int) -> int:
        waived = self.free_shipping_min_minor is not None and \
            goods_net_minor >= self.free_shipping_min_minor
        return 0 if waived else self.fee_minor


@dataclass(frozen=True)
class PricedLine:
    line_no: int  # 1-based, in request order
    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    gross_minor: int
    discount_minor: int
    net_minor: int

    def as_dict(self) -> dict[str, Any]:
        return {"line_no": self.line_no, "sku": self.sku, "name": self.name,
                "quantity": self.quantity, "unit_price_minor": self.unit_price_minor,
                "gross_minor": self.gross_minor, "discount_minor": self.discount_minor,
                "net_minor": self.net_minor}


@dataclass(frozen=True)
class PricedOrder:
    currency: str
    lines: tuple[PricedLine, ...]
    shipping_fee_minor: int
    coupon_code: str | None = None
    coupon_discount_minor: int = 0
    threshold_promotion_id: str | None = None
    threshold_discount_minor: int = 0

    @property
    def subtotal_minor(self) -> int:
        return sum(line.gross_minor for line in self.lines)

    @property
    def discount_minor(self) -> int:
        return sum(line.discount_minor for line in self.lines)

    @property
    def total_minor(self) -> int:
        return sum(line.net_minor for line in self.lines) + self.shipping_fee_minor

    def promotions(self) -> dict[str, Any]:
        return {"coupon_code": self.coupon_code,
                "coupon_discount_minor": self.coupon_discount_minor,
                "threshold_promotion_id": self.threshold_promotion_id,
                "threshold_discount_minor": self.threshold_discount_minor}


def check_requested_lines(lines: Sequence[tuple[str, int]]) -> None:
    """At least one line, each SKU once, quantities 1 to 10,000 (InvalidCommand)."""
    if not lines:
        raise InvalidCommand("an order needs at least one line", field="lines")
    skus = [sku for sku, _ in lines]
    if len(set(skus)) != len(skus):
        raise InvalidCommand("each sku may appear on one line only", field="lines")
    for sku, quantity in lines:
        if not sku.strip():
            raise InvalidCommand("every line needs a sku", field="lines")
        if type(quantity) is not int or not 1 <= quantity <= MAX_LINE_QUANTITY:
            raise InvalidCommand(f"quantity of {sku} must be 1 to {MAX_LINE_QUANTITY}",
                                 field="lines")


def check_customer(customer_id: str, name: str, phone: str) -> dict[str, str]:
    """The customer as an order keeps it: id and name present, phone normalised
    (InvalidCommand, field customer_id, name or phone)."""
    if not customer_id.strip():
        raise InvalidCommand("a customer id is required", field="customer_id")
    if not name.strip():
        raise InvalidCommand("the customer's name is required", field="name")
    return {"customer_id": customer_id.strip(), "name": name.strip(),
            "phone": normalize_phone(phone)}


def check_address(address: Mapping[str, str | None]) -> dict[str, str | None]:
    """region, city and line1 present; postcode optional (InvalidCommand, field named)."""
    for name in ADDRESS_FIELDS:
        if not (address.get(name) or "").strip():
            raise InvalidCommand(f"the shipping address needs a {name}", field=name)
    postcode = (address.get("postcode") or "").strip() or None
    return {**{name: str(address[name]).strip() for name in ADDRESS_FIELDS},
            "postcode": postcode}


def catalog_prices(lines: Sequence[tuple[str, int]],
                   catalog: Mapping[str, CatalogEntry]) -> list[CatalogEntry]:
    """The catalog entry of each line's SKU: unknown SKUs are InvalidCommand (422),
    delisted ones ProductUnavailable (409 product_unavailable)."""
    entries = []
    for sku, _ in lines:
        entry = catalog.get(sku)
        if entry is None:
            raise InvalidCommand(f"there is no product {sku}", field="lines")
        if not entry.listed:
            raise ProductUnavailable(f"{sku} is not on sale", sku=sku)
        entries.append(entry)
    return entries


def price_order(lines: Sequence[tuple[str, int]], catalog: Mapping[str, CatalogEntry],
                currency: str, at: datetime, coupon: CouponTerms | None = None,
                thresholds: Sequence[ThresholdTerms] = (),
                shipping: ShippingFeeRule = ShippingFeeRule()) -> PricedOrder:
    """Price the requested (sku, quantity) lines at catalog prices, apply at most one
    coupon plus the best threshold tier active at `at`, and add the shipping fee. Raises
    the errors of check_requested_lines, catalog_prices and compute_discount."""
    check_requested_lines(lines)
    entries = catalog_prices(lines, catalog)
    sale = [SaleLine(e.sku, quantity, e.price_minor) for e, (_, quantity) in zip(entries, lines)]
    discount = compute_discount(sale, at, coupon, thresholds)
    priced = tuple(
        PricedLine(line_no=n, sku=s.sku, name=e.name, quantity=s.quantity,
                   unit_price_minor=s.unit_price_minor, gross_minor=s.gross_minor,
                   discount_minor=d, net_minor=s.gross_minor - d)
        for n, (s, e, d) in enumerate(zip(sale, entries, discount.line_discounts), start=1))
    goods_net = sum(line.net_minor for line in priced)
    return PricedOrder(currency=currency, lines=priced,
                       shipping_fee_minor=shipping.fee_for(goods_net),
                       coupon_code=discount.coupon_code,
                       coupon_discount_minor=discount.coupon_minor,
                       threshold_promotion_id=discount.threshold_promotion_id,
                       threshold_discount_minor=discount.threshold_minor)
