"""Return reasons, items sold for return rates, and what returns cost per supplier and SKU."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain.events import (
    InspectedItem,
    ItemsInspected,
    OrderCancelled,
    OrderPlaced,
    RefundRequested,
    RefundSettled,
    RepairCompleted,
    RepairedItemRestocked,
    ReturnAuthorized,
    ReturnRejected,
    StoreCreditIssued,
    SupplierCreditReceived,
    VendorReturnShipped,
)
from projections.core import InMemoryReadModel, key_of
from projections.reasons import ReturnReasons
from tests.unit.builders import (
    Story,
    decision,
    eur,
    return_line,
    return_requested,
    uid,
    wire,
)
from tests.unit.builders import story_line as line
from tests.unit.builders import story_payment as payment

ORDER, CANCELLED, RMA = uid("o"), uid("o-cancelled"), uid("r")


def row(model: InMemoryReadModel, table: str, **key: str) -> dict[str, Any]:
    return model.tables[table].get(key_of(key), {})


def cost(model: InMemoryReadModel, supplier: str, sku: str) -> dict[str, Any]:
    return row(model, "rm_return_costs", supplier=supplier, sku=sku, currency="EUR")


def sale(story: Story) -> None:
    story.add(
        OrderPlaced,
        ORDER,
        order_number="WEB-1",
        customer_id="C-1",
        channel="web",
        currency="EUR",
        lines=(
            line(1, "SKU-A", 4, "30.00", "Acme", "shoes"),
            line(2, "SKU-B", 2, "10.00", "Bolt", "socks"),
        ),
        payments=(payment("140.00"),),
        shipping=eur("0.00"),
    )


def request(
    story: Story, fees: tuple[str, str] = ("0.00", "0.00"), *, authorize: bool = True
) -> None:
    return_requested(
        story,
        RMA,
        ORDER,
        (
            return_line(1, "SKU-A", 3, "size_too_small", "30.00", "Acme", "shoes"),
            return_line(2, "SKU-B", 1, "changed_mind", "10.00", "Bolt", "socks"),
        ),
    )
    if not authorize:
        return
    story.add(
        ReturnAuthorized,
        RMA,
        rma_number="RMA-7K2Q-M4XD",
        destination_warehouse="WH-1",
        label_reference="L",
        instructions="i",
        expected_refund=eur("100.00"),
        restocking_fee=eur(str(Decimal(fees[0]) + Decimal(fees[1]))),
        shipping_refund=eur("0.00"),
        decisions=(decision(1, fees[0]), decision(2, fees[1])),
    )


def inspected(story: Story, *dispositions: tuple[str, int]) -> None:
    story.add(
        ItemsInspected,
        RMA,
        receipt_id=None,
        items=tuple(
            InspectedItem.model_validate(
                {
                    "sku": "SKU-A",
                    "quantity": quantity,
                    "condition": "damaged",
                    "disposition": disposition,
                    "line_no": 1,
                    "location_id": "WH-1",
                }
            )
            for disposition, quantity in dispositions
        ),
        refund_due=eur("0.00"),
    )


def test_reasons_and_sales_are_counted_on_the_same_keys_for_return_rates() -> None:
    story = Story()
    sale(story)
    story.add(
        OrderPlaced,
        CANCELLED,
        order_number="WEB-2",
        customer_id="C-2",
        channel="web",
        currency="EUR",
        lines=(line(1, "SKU-A", 9, "30.00", "Acme", "shoes"),),
        payments=(payment("270.00"),),
        shipping=eur("0.00"),
    )
    story.add(OrderCancelled, CANCELLED, reason="fraud")
    request(story)
    model = InMemoryReadModel(ReturnReasons())
    model.apply(story.events)
    sold_a = row(
        model, "rm_items_sold", sku="SKU-A", supplier="Acme", category="shoes", channel="web"
    )
    assert (sold_a["items"], sold_a["order_lines"]) == (4, 1)
    reason_a = row(
        model,
        "rm_return_reasons",
        reason="size_too_small",
        sku="SKU-A",
        supplier="Acme",
        category="shoes",
        channel="web",
    )
    assert (reason_a["returns"], reason_a["items"]) == (1, 3)


def test_a_rejection_counts_the_refused_lines() -> None:
    story = Story()
    sale(story)
    request(story, authorize=False)
    story.add(
        ReturnRejected,
        RMA,
        code="outside_return_window",
        reason="late",
        decisions=(decision(1), decision(2, accepted=False)),
    )
    model = InMemoryReadModel(ReturnReasons())
    model.apply(story.events)
    refused = row(
        model,
        "rm_return_reasons",
        reason="changed_mind",
        sku="SKU-B",
        supplier="Bolt",
        category="socks",
        channel="web",
    )
    assert refused["rejected"] == 1


def test_scrap_is_valued_at_the_sale_price_and_legs_stay_open_until_they_end() -> None:
    story = Story()
    sale(story)
    request(story)
    inspected(story, ("scrap", 2), ("repair", 1), ("return_to_vendor", 1), ("repair", 1))
    model = InMemoryReadModel(ReturnReasons())
    model.apply(story.events)
    acme = cost(model, "Acme", "SKU-A")
    assert (acme["scrapped_items"], acme["scrapped_value"]) == (2, Decimal("60.00"))
    assert (acme["open_repair_legs"], acme["open_vendor_legs"]) == (2, 1)
    story.add(RepairCompleted, RMA, leg_id="L2", outcome="repaired")
    story.add(RepairedItemRestocked, RMA, leg_id="L2", location_id="WH-1")
    story.add(RepairCompleted, RMA, leg_id="L4", outcome="beyond_repair")
    story.add(VendorReturnShipped, RMA, leg_id="L3", supplier="Acme", vendor_rma="V-1")
    story.add(SupplierCreditReceived, RMA, leg_id="L3", amount=eur("12.50"))
    model.apply(story.events[-5:])
    acme = cost(model, "Acme", "SKU-A")
    assert (acme["open_repair_legs"], acme["open_vendor_legs"]) == (0, 0)
    assert acme["supplier_credits"] == Decimal("12.50")


def test_refunds_are_attributed_to_lines_by_value_and_fees_are_kept_once() -> None:
    story = Story()
    sale(story)
    request(story, fees=("9.00", "1.00"))
    story.add(
        RefundRequested,
        RMA,
        refund_id="RF-1",
        amount=eur("90.00"),
        restocking_fee=eur("10.00"),
        shipping_refund=eur("0.00"),
        allocations=({"payment_id": "P", "method": "card", "amount": wire("90.00")},),
    )
    story.add(RefundSettled, RMA, refund_id="RF-1", provider_reference="p", amount=eur("90.00"))
    story.add(
        StoreCreditIssued,
        RMA,
        credit_id="SC-1",
        amount=eur("10.00"),
        bonus=eur("0.00"),
        # The fee went with RF-1: the domain records it once (Return.unbilled_fee).
        restocking_fee=eur("0.00"),
    )
    model = InMemoryReadModel(ReturnReasons())
    model.apply(story.events)
    acme, bolt = cost(model, "Acme", "SKU-A"), cost(model, "Bolt", "SKU-B")
    # Lines worth 90.00 and 10.00: 90 % and 10 % of each payment.
    assert (acme["refunded"], bolt["refunded"]) == (Decimal("90.00"), Decimal("10.00"))
    assert (acme["restocking_fees_kept"], bolt["restocking_fees_kept"]) == (
        Decimal("9.00"),
        Decimal("1.00"),
    )
