"""Read models, one module each, and the runner that keeps them current."""
from __future__ import annotations

from projections.base import Projection
from projections.catalog import CatalogProjection
from projections.inventory import InventoryProjection


def all_projections() -> list[Projection]:
    return [CatalogProjection(), InventoryProjection()]
