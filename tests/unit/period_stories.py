"""A known history spread over days, and the figures analytics must give for it.

Shared by the unit tests (the reducer in memory) and the integration tests (the real
read-model store and the analytics queries behind the API).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from domain.events import (
    InspectedItem,
    ItemsInspected,
    OrderCancelled,
    OrderPlaced,
    RefundRequested,
    RefundSettled,
    ReturnAuthorized,
    ReturnRejected,
    SupplierCreditReceived,
    VendorReturnShipped,
)
from tests.unit.builders import T0, Story, decision, eur, return_line, return_requested, uid, wire
from tests.unit.builders import story_line as line
from tests.unit.builders import story_payment as payment

DAY0 = T0.date()
EVENTS = 12
SPREAD = [0, 0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 9]
"""The day of each event of ``history`` in the reference story."""
FEE = "3.00"


def on_day(n: int) -> date:
    return DAY0 + timedelta(days=n)


def history(
    days: list[int], *, quantity: int = 3, price: str = "30.00", credit: str = "12.50"
) -> Story:
    """Each event on ``days[i]`` (non-decreasing), in this order: an order of 4 SKU-A
    (``quantity`` + 1) and 2 SKU-B on the web, an order of 9 SKU-A, its cancellation; a
    return of ``quantity`` SKU-A and 1 SKU-B, both defective; a second return of 1 SKU-B
    (changed mind) and its rejection; the first one's authorization (a fee of 3.00 on line
    1), its refund requested and settled; the inspection (1 SKU-A scrapped, 1 sent to the
    vendor), the vendor leg shipped and ``credit`` received for it."""
    story, order, cancelled, rma, refused = Story(), uid("o"), uid("o-x"), uid("r"), uid("r2")
    moments = iter(T0 + timedelta(days=d, minutes=i) for i, d in enumerate(days))
    story.add(
        OrderPlaced,
        order,
        at=next(moments),
        order_number="WEB-1",
        customer_id="C-1",
        channel="web",
        currency="EUR",
        lines=(
            line(1, "SKU-A", quantity + 1, price, "Acme", "shoes"),
            line(2, "SKU-B", 2, "10.00", "Bolt", "socks"),
        ),
        payments=(payment("9999.00"),),
        shipping=eur("0.00"),
    )
    story.add(
        OrderPlaced,
        cancelled,
        at=next(moments),
        order_number="WEB-2",
        customer_id="C-2",
        channel="web",
        currency="EUR",
        lines=(line(1, "SKU-A", 9, price, "Acme", "shoes"),),
        payments=(payment("9999.00"),),
        shipping=eur("0.00"),
    )
    story.add(OrderCancelled, cancelled, at=next(moments), reason="fraud")
    return_requested(
        story,
        rma,
        order,
        (
            return_line(1, "SKU-A", quantity, "defective", price, "Acme", "shoes"),
            return_line(2, "SKU-B", 1, "defective", "10.00", "Bolt", "socks"),
        ),
        at=next(moments),
    )
    return_requested(
        story,
        refused,
        order,
        (return_line(2, "SKU-B", 1, "changed_mind", "10.00", "Bolt", "socks"),),
        at=next(moments),
    )
    story.add(
        ReturnRejected,
        refused,
        at=next(moments),
        code="outside_return_window",
        reason="late",
        decisions=(decision(2, accepted=False),),
    )
    refund = Decimal(price) * quantity + Decimal("10.00") - Decimal(FEE)
    story.add(
        ReturnAuthorized,
        rma,
        at=next(moments),
        rma_number="RMA-7K2Q-M4XD",
        destination_warehouse="WH-1",
        label_reference="L",
        instructions="i",
        expected_refund=eur(str(refund)),
        restocking_fee=eur(FEE),
        shipping_refund=eur("0.00"),
        decisions=(decision(1, FEE), decision(2)),
    )
    story.add(
        RefundRequested,
        rma,
        at=next(moments),
        refund_id="RF-1",
        amount=eur(str(refund)),
        restocking_fee=eur(FEE),
        shipping_refund=eur("0.00"),
        allocations=({"payment_id": "P", "method": "card", "amount": wire(str(refund))},),
    )
    story.add(
        RefundSettled,
        rma,
        at=next(moments),
        refund_id="RF-1",
        provider_reference="p",
        amount=eur(str(refund)),
    )
    story.add(
        ItemsInspected,
        rma,
        at=next(moments),
        receipt_id=None,
        items=tuple(
            InspectedItem.model_validate(
                {
                    "sku": "SKU-A",
                    "quantity": 1,
                    "condition": "defective",
                    "disposition": disposition,
                    "line_no": 1,
                    "location_id": "WH-1",
                }
            )
            for disposition in ("scrap", "return_to_vendor")
        ),
        refund_due=eur("0.00"),
    )
    story.add(
        VendorReturnShipped, rma, at=next(moments), leg_id="L2", supplier="Acme", vendor_rma="V"
    )
    story.add(SupplierCreditReceived, rma, at=next(moments), leg_id="L2", amount=eur(credit))
    return story


def reference() -> Story:
    """``history`` on ``SPREAD``: sales on day 0 (the cancelled order's too), cancelled on
    day 1, returns requested on days 2 and 3, the refusal on day 4, the authorization on
    day 5, the refund (97.00: 87.30 for SKU-A, 9.70 for SKU-B) settled on day 6, the
    inspection on day 7 (30.00 scrapped), the supplier's credit of 12.50 on day 9."""
    return history(SPREAD)
