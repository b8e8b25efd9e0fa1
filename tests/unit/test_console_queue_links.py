"""A queue item links to the page where the signed-in role works on it."""

from __future__ import annotations

from adapters.driving.api.auth import Role
from adapters.driving.console.queues import item_link

HELD = {"rma_number": "RMA-1", "return_id": "r-1", "status": "pending_review"}
BLIND = {"rma_number": None, "return_id": "r-2", "status": "blind_unmatched"}


def test_customer_service_opens_the_rma_or_the_blind_parcels_matching_page() -> None:
    assert item_link(Role.CUSTOMER_SERVICE, HELD) == "/console/returns/RMA-1"
    assert item_link(Role.ADMIN, BLIND) == "/console/blind/r-2"


def test_the_warehouse_and_stores_open_their_own_pages_for_it() -> None:
    assert item_link(Role.WAREHOUSE, HELD) == "/console/warehouse/rmas/RMA-1"
    assert item_link(Role.STORE, HELD) == "/console/store/rmas/RMA-1"
    assert item_link(Role.STORE, BLIND) is None  # no counter page for a parcel with no RMA
    assert item_link(Role.ANALYTICS, HELD) is None
