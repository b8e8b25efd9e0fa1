"""What a printed document says, apart from how it is printed: the return note and the
store receipt as plain data, rendered as HTML (documents.py) or PDF (pdf.py) from the same
``Sheet``, so the two formats can never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain.order import Order
from domain.queries import ReturnsQueries
from domain.returns import Return, ReturnStatus
from domain.values import Money, RefundMethod, ReturnMethod

# An RMA in one of these states must not be shipped: its note says so before anything else.
VOID_BANNERS: Mapping[ReturnStatus, str] = {
    ReturnStatus.CANCELLED: "CANCELLED: this return was cancelled. Do not send this parcel;"
    " the label is void.",
    ReturnStatus.EXPIRED: "EXPIRED: no parcel came in time and this return has expired."
    " Do not send this parcel; the label is void.",
    ReturnStatus.REJECTED: "REJECTED: this return was not accepted. Do not send this parcel.",
}


@dataclass(frozen=True)
class SheetLine:
    line_no: int
    name: str
    sku: str
    quantity: int
    reason: str
    unit_price: Money
    fee: Money
    amount: Money
    """What the line is expected to bring back: price times quantity less its fee (zero
    for a line the policy did not accept)."""
    note: str = ""


@dataclass(frozen=True)
class Sheet:
    title: str
    rma_number: str
    facts: tuple[tuple[str, str], ...]
    lines: tuple[SheetLine, ...]
    totals: tuple[tuple[str, str], ...]
    policy: tuple[str, ...]
    banner: str | None = None
    address: tuple[str, ...] = ()
    sections: tuple[tuple[str, str, tuple[str, ...]], ...] = field(default=())
    """(kind, title, entries): the kind names the list in the HTML (``class``)."""


def line_names(queries: ReturnsQueries, rma: Return) -> dict[int, str]:
    """The order's name of each line (a return line keeps only the SKU); none for a blind
    return with no order yet."""
    order_id = rma.state.order_id
    order = queries.load(Order, order_id) if order_id is not None else None
    if not isinstance(order, Order):
        return {}
    return {no: line.name for no, line in order.state.lines.items() if line.name}


def money(value: Money | None) -> str:
    return "" if value is None else f"{value.amount.quantize(Decimal('0.01'))} {value.currency}"


def date(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d")


def address_lines(warehouse: str | None, addresses: Mapping[str, str]) -> tuple[str, ...]:
    """The warehouse's configured address, one line per comma-separated part; a warehouse
    nobody configured still shows its id, so the parcel is never addressed to nothing."""
    if warehouse is None:
        return ()
    known = addresses.get(warehouse)
    if known is None:
        return (f"Returns warehouse {warehouse}",)
    return tuple(part.strip() for part in known.split(",") if part.strip())


def sheet_lines(rma: Return, names: Mapping[int, str]) -> tuple[SheetLine, ...]:
    s = rma.state
    rows = []
    for line in s.lines.values():
        gross = line.unit_price.times(line.quantity)
        decision = s.decisions.get(line.line_no)
        fee = decision.restocking_fee if decision else Money.zero(gross.currency)
        accepted = decision is None or decision.accepted
        rows.append(
            SheetLine(
                line_no=line.line_no,
                name=names.get(line.line_no) or line.sku,
                sku=line.sku,
                quantity=line.quantity,
                reason=line.reason.value,
                unit_price=line.unit_price,
                fee=fee,
                amount=gross - fee if accepted else Money.zero(gross.currency),
                note="" if accepted else f"not accepted ({decision.code if decision else ''})",
            )
        )
    return tuple(rows)


def policy_text(rma: Return, expires_at: datetime | None) -> tuple[str, ...]:
    """The terms recorded when the RMA was decided (never today's policy: a later change
    does not rewrite what the customer was promised) and what happens next."""
    s = rma.state
    terms = next(iter(s.decisions.values())).terms if s.decisions else None
    text = []
    if terms is not None:
        rate = Decimal(terms.restocking_fee_rate) * 100
        text.append(
            f"Return window: {terms.window_days} days from delivery; warranty "
            f"{terms.warranty_months} months. A restocking fee of {rate.normalize():f}% of the"
            f" price applies to a change of mind sent back more than"
            f" {terms.late_change_of_mind_days} days after delivery; faulty or wrong items"
            " are refunded in full."
        )
    if s.method is ReturnMethod.STORE:
        text.append("Bring the items and this note to the store counter.")
    elif expires_at is not None:
        text.append(
            f"Send the parcel by {date(expires_at)}: an RMA with no parcel by then expires."
        )
    refund = {
        RefundMethod.ORIGINAL_PAYMENT: "refunded to the original payment",
        RefundMethod.STORE_CREDIT: "paid as store credit",
        RefundMethod.EXCHANGE: "used for an exchange",
    }[s.refund_method]
    text.append(
        "What happens next: the items are received and inspected; the amount due"
        f" after inspection (expected {money(s.expected_refund)}) is {refund}."
        " Items found damaged or incomplete may be refunded in part."
    )
    return tuple(text)


def note_sheet(
    rma: Return,
    names: Mapping[int, str],
    addresses: Mapping[str, str],
    expires_at: datetime | None,
) -> Sheet:
    s = rma.state
    facts = (
        ("Order", s.order_number or ""),
        ("Requested", date(s.requested_at)),
        ("Authorized", date(s.authorized_at)),
        ("Status", s.status.value),
        ("Label", s.label_reference or ""),
        ("Refund to", s.refund_method.value),
    )
    totals = (
        ("Restocking fee", money(s.restocking_fee)),
        ("Shipping refunded", money(s.shipping_refund)),
        ("Expected refund", money(s.expected_refund)),
    )
    sections = (
        (("instructions", "Packing instructions", (s.instructions,)),) if s.instructions else ()
    )
    return Sheet(
        title="Return note",
        rma_number=s.rma_number or "",
        facts=facts,
        lines=sheet_lines(rma, names),
        totals=totals,
        policy=policy_text(rma, expires_at),
        banner=VOID_BANNERS.get(s.status),
        address=address_lines(s.destination_warehouse, addresses),
        sections=sections,
    )


def receipt_sheet(
    rma: Return,
    names: Mapping[int, str],
    store_id: str,
    store_return_id: str,
    settled: list[str],
    pending: list[str],
) -> Sheet:
    s = rma.state
    conditions = {i.line_no: i.condition.value for i in s.inspected_items if i.line_no}
    lines = tuple(
        SheetLine(**{**line.__dict__, "note": conditions.get(line.line_no, line.note)})
        for line in sheet_lines(rma, names)
    )
    facts = (
        ("Store", store_id),
        ("Receipt", store_return_id),
        ("Order", s.order_number or ""),
        ("Requested", date(s.requested_at)),
        ("Status", s.status.value),
    )
    return Sheet(
        title="Return receipt",
        rma_number=s.rma_number or "",
        facts=facts,
        lines=lines,
        totals=(("Restocking fee", money(s.restocking_fee)),),
        policy=policy_text(rma, None),
        banner=VOID_BANNERS.get(s.status),
        sections=(
            ("settled", f"Refund ({s.refund_method.value}): settled", tuple(settled) or ("none",)),
            ("pending", "Pending", tuple(pending) or ("none",)),
        ),
    )
