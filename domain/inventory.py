"""Inventory per SKU and location as counted and adjusted by the warehouse.

Sales and returns move stock too, but those facts belong to orders and returns; the stock
level read model combines all of them. This aggregate holds only what the WMS asserts.
"""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.aggregate import Aggregate
from domain.errors import InvalidCommand
from domain.events import Cause, InventoryEvent, StockAdjusted, StockCounted

INVENTORY_NAMESPACE = uuid5(NAMESPACE_URL, "urn:oms:inventory")


def inventory_id_for(sku: str, location_id: str) -> UUID:
    return uuid5(INVENTORY_NAMESPACE, f"{sku}@{location_id}")


class Inventory(Aggregate[InventoryEvent]):
    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.sku = ""
        self.location_id = ""
        self.on_hand = 0
        self.applied: set[str] = set()

    @classmethod
    def start(cls, sku: str, location_id: str) -> Inventory:
        inventory = cls(inventory_id_for(sku, location_id))
        inventory.sku, inventory.location_id = sku, location_id
        return inventory

    def count(
        self,
        quantity: int,
        count_id: str,
        at: datetime,
        cause: Cause,
        *,
        counted_at: datetime | None = None,
    ) -> None:
        if quantity < 0:
            raise InvalidCommand(f"a count of {self.sku} cannot be negative")
        if count_id in self.applied:
            return
        self._trigger(
            StockCounted,
            cause,
            at,
            sku=self.sku,
            location_id=self.location_id,
            quantity=quantity,
            count_id=count_id,
            counted_at=counted_at,
        )

    def adjust(
        self, delta: int, reason: str, adjustment_id: str, at: datetime, cause: Cause
    ) -> None:
        if delta == 0:
            raise InvalidCommand("an adjustment of zero changes nothing")
        if not reason.strip():
            raise InvalidCommand("an adjustment needs a reason")
        if adjustment_id in self.applied:
            return
        self._trigger(
            StockAdjusted,
            cause,
            at,
            sku=self.sku,
            location_id=self.location_id,
            delta=delta,
            reason=reason,
            adjustment_id=adjustment_id,
        )

    def apply(self, event: InventoryEvent) -> None:
        self.sku, self.location_id = event.sku, event.location_id
        match event:
            case StockCounted():
                self.on_hand = event.quantity
                self.applied.add(event.count_id)
            case StockAdjusted():
                self.on_hand += event.delta
                self.applied.add(event.adjustment_id)
