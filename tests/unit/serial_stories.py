"""One serial's life as stored events: sold, returned, repaired, restocked and sold again
(optionally sold to someone else while it was in repair). Shared by the unit and
integration tests of projections/serials.py."""

from __future__ import annotations

from uuid import UUID, uuid4

from domain.events import (
    FulfilledLine,
    InspectedItem,
    ItemsInspected,
    OrderLine,
    OrderLinesFulfilled,
    OrderPlaced,
    ReceivedItem,
    RepairCompleted,
    RepairedItemRestocked,
    RepairSent,
    ReturnAuthorized,
    ReturnLine,
    ReturnParcelReceived,
    VendorItemReturned,
    VendorReturnShipped,
)
from projections.core import Event
from tests.unit.builders import Story, decision, eur, return_requested
from tests.unit.builders import story_payment as payment


def serial_line(serials: tuple[str, ...] = ()) -> OrderLine:
    return OrderLine.model_validate(
        {
            "line_no": 1,
            "sku": "SKU-1",
            "quantity": 1,
            "unit_price": {"amount": "50.00", "currency": "EUR"},
            "serials": serials,
        }
    )


def place(story: Story, order: UUID, number: str, customer: str, **fields: object) -> None:
    story.add(
        OrderPlaced,
        order,
        order_number=number,
        customer_id=customer,
        currency="EUR",
        payments=(payment("50.00"),),
        shipping=eur("0.00"),
        **{"channel": "web", "lines": (serial_line(),), **fields},
    )


def serial_life(
    serial: str, *, sold_while_in_repair: bool = False, ending: str = "repaired"
) -> list[Event]:
    """W1 to C-1, shipped from WH-1; returned on an RMA, received at WH-RET, sent to repair;
    (S2 to C-2 at the counter of ST-1, while in repair;) repaired, restocked at WH-B; W3 to
    C-3, shipped from WH-B. ``ending``: ``replaced`` (the repair centre sends ``<serial>-NEW``
    instead, which is restocked and resold) or ``vendor_sent_back`` (inspected for the vendor,
    shipped there and sent back to WH-B)."""
    vendor = ending == "vendor_sent_back"
    resold = f"{serial}-NEW" if ending == "replaced" else serial
    story = Story()
    first, rma, resale = uuid4(), uuid4(), uuid4()
    place(story, first, f"W1-{serial}", "C-1")
    story.add(
        OrderLinesFulfilled,
        first,
        location_id="WH-1",
        lines=(FulfilledLine(line_no=1, quantity=1, serials=(serial,)),),
    )
    line = ReturnLine.model_validate(
        {
            "line_no": 1,
            "sku": "SKU-1",
            "quantity": 1,
            "reason": "defective",
            "unit_price": {"amount": "50.00", "currency": "EUR"},
            "serial": serial,
        }
    )
    return_requested(story, rma, first, (line,), order_number=f"W1-{serial}")
    story.add(
        ReturnAuthorized,
        rma,
        rma_number=f"RMA-{serial}",
        destination_warehouse="WH-RET",
        label_reference="LBL",
        instructions="pack it",
        expected_refund=eur("50.00"),
        restocking_fee=eur("0.00"),
        shipping_refund=eur("0.00"),
        decisions=(decision(1),),
    )
    story.add(
        ReturnParcelReceived,
        rma,
        receipt_id=f"R-{serial}",
        warehouse_id="WH-RET",
        items=(ReceivedItem(sku="SKU-1", quantity=1, serial=serial),),
    )
    story.add(
        ItemsInspected,
        rma,
        receipt_id=f"R-{serial}",
        items=(
            InspectedItem.model_validate(
                {
                    "sku": "SKU-1",
                    "quantity": 1,
                    "serial": serial,
                    "condition": "defective",
                    "disposition": "return_to_vendor" if vendor else "repair",
                    "line_no": 1,
                    "location_id": "WH-RET",
                }
            ),
        ),
        refund_due=eur("50.00"),
    )
    if vendor:
        story.add(VendorReturnShipped, rma, leg_id="L1", supplier="Acme", vendor_rma="VRA-1")
        story.add(VendorItemReturned, rma, leg_id="L1", location_id="WH-B")
    else:
        story.add(RepairSent, rma, leg_id="L1", repair_center="FixIt")
    if sold_while_in_repair:
        place(
            story,
            uuid4(),
            f"S2-{serial}",
            "C-2",
            channel="store",
            store_id="ST-1",
            lines=(serial_line((serial,)),),
        )
    if not vendor:
        story.add(
            RepairCompleted,
            rma,
            leg_id="L1",
            outcome=ending,
            replacement_serial=resold if ending == "replaced" else None,
        )
        story.add(RepairedItemRestocked, rma, leg_id="L1", location_id="WH-B")
    place(story, resale, f"W3-{serial}", "C-3", lines=(serial_line((resold,)),))
    story.add(
        OrderLinesFulfilled,
        resale,
        location_id="WH-B",
        lines=(FulfilledLine(line_no=1, quantity=1, serials=(resold,)),),
    )
    return story.events
