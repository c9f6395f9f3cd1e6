"""Read models, one module each, and the runner that keeps them current."""
from __future__ import annotations

from projections.aftersales import AfterSalesProjection
from projections.audit_checkpoints import AuditCheckpointsProjection
from projections.base import Projection
from projections.catalog import CatalogProjection
from projections.commissions import CommissionsProjection
from projections.distributors import DistributorsProjection
from projections.inventory import InventoryProjection
from projections.ledger import LedgerProjection
from projections.notifications import NotificationsProjection
from projections.orders import OrdersProjection
from projections.promotions import PromotionsProjection
from projections.purchase_orders import PurchaseOrdersProjection
from projections.reports import ReportsProjection
from projections import seal  # noqa: F401  (registers the event log seal's tables)
from projections.shipments import ShipmentsProjection


def all_projections() -> list[Projection]:
    return [CatalogProjection(), InventoryProjection(), DistributorsProjection(),
            CommissionsProjection(), LedgerProjection(), OrdersProjection(), ShipmentsProjection(),
            PromotionsProjection(), PurchaseOrdersProjection(),
            NotificationsProjection(), AfterSalesProjection(), AuditCheckpointsProjection(),
            ReportsProjection()]
