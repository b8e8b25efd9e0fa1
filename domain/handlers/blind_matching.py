"""Placing a blind parcel: which orders its items fit, for the match at receipt and for the
suggestions customer service sees on the ones still waiting.

Pure but for the loaders it is given: the handler passes its unit of work's, the queries
their own, so both decide on the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from domain.errors import InvalidValue
from domain.events import ReceivedItem
from domain.lookups import BlindCandidateRows, SerialRow
from domain.order import Order, order_id_for
from domain.returns import RequestedLine, Return, ReturnState
from domain.values import Channel, ReasonCode, RmaNumber

# Best first: what the parcel itself proves, then what it says, then mere likelihood.
SOURCES = ("serial", "claimed_rma", "order_hint", "customer", "sku")
# Only these place a parcel with no person; customer and SKU only suggest.
AUTOMATIC = {"serial": "serial", "claimed_rma": "claimed_rma", "order_hint": "order"}
SUGGESTIONS_LIMIT = 5
"""Orders suggested at most per blind return (each with the lines its items take)."""
SEARCH_LIMIT = 20
"""Orders read at most per source while looking (a popular SKU is in thousands)."""


@dataclass(frozen=True)
class Fit:
    """The parcel's items laid on one order's lines; ``complete`` when every item found
    a line with enough left to return."""

    lines: tuple[RequestedLine, ...]
    complete: bool


@dataclass
class Candidate:
    order: Order
    by: str
    fit: Fit
    reasons: dict[int, ReasonCode] = field(default_factory=dict)


def fit(
    order: Order, items: Sequence[ReceivedItem], reasons: Mapping[int, ReasonCode] | None = None
) -> Fit:
    """Lay ``items`` on ``order``'s lines within what is still returnable: a serial on the
    line it was sold on, other items on a line of their SKU."""
    if order.state.cancelled:
        return Fit((), False)
    left = order.returnable_quantities()
    taken: dict[int, int] = {}
    serials: dict[int, list[str]] = {}
    complete = True
    # Serials first, so an item without one does not take the line a serial needs.
    for item in sorted(items, key=lambda i: i.serial is None):
        line_no = order.serial_line(item.serial) if item.serial else None
        if line_no is None:
            line_no = next(
                (
                    n
                    for n, line in sorted(order.state.lines.items())
                    if line.sku == item.sku and left.get(n, 0) - taken.get(n, 0) >= item.quantity
                ),
                None,
            )
        if line_no is None or left.get(line_no, 0) - taken.get(line_no, 0) < item.quantity:
            complete = False
            continue
        taken[line_no] = taken.get(line_no, 0) + item.quantity
        if item.serial and order.serial_line(item.serial) == line_no:
            serials.setdefault(line_no, []).append(item.serial)
    reasons = reasons or {}
    lines = tuple(
        RequestedLine(
            line_no=n,
            quantity=q,
            reason=reasons.get(n, ReasonCode.OTHER),
            # A line names its serial only when it is one item: the type holds one.
            serial=serials[n][0] if q == 1 and len(serials.get(n, [])) == 1 else None,
        )
        for n, q in sorted(taken.items())
    )
    return Fit(lines, complete and bool(lines))


class CandidateLookups(Protocol):
    """The lookups ``candidates`` reads: ``Lookups`` itself, or a page's prefetched rows."""

    def sales_of_serial(self, serial: str) -> list[SerialRow]: ...

    def return_id_for_rma(self, rma_number: str) -> UUID | None: ...

    def orders_of_customer(self, customer_id: str, limit: int) -> list[UUID]: ...

    def orders_with_sku(self, sku: str, limit: int) -> list[UUID]: ...


@dataclass(frozen=True)
class PrefetchedLookups:
    """``CandidateLookups`` answered from rows read for a whole page of parcels at once
    (``Lookups.blind_candidate_rows``), so the page's suggestions cost no read per parcel."""

    rows: BlindCandidateRows

    @staticmethod
    def keys_of(parcels: Sequence[ReturnState]) -> dict[str, list[Any]]:
        """What to ask ``blind_candidate_rows`` for these parcels (its keyword arguments
        but ``limit``)."""
        serials = sorted({i.serial for p in parcels for i in p.received_items if i.serial})
        numbers: set[str] = set()
        for p in parcels:
            # One not even shaped like ours is skipped, as candidates skips it.
            if p.blind_claimed_rma:
                with suppress(InvalidValue):
                    numbers.add(str(RmaNumber(p.blind_claimed_rma)))
        hinted = {order_id_for(p.blind_order_hint) for p in parcels if p.blind_order_hint}
        skus = sorted({i.sku for p in parcels for i in p.received_items})
        return {
            "serials": serials,
            "rma_numbers": sorted(numbers),
            "order_ids": sorted(hinted),
            "skus": skus,
        }

    def sales_of_serial(self, serial: str) -> list[SerialRow]:
        return self.rows.sales.get(serial, [])

    def return_id_for_rma(self, rma_number: str) -> UUID | None:
        return self.rows.returns_of_rma.get(rma_number)

    def orders_of_customer(self, customer_id: str, limit: int) -> list[UUID]:
        return self.rows.orders_of_customer.get(customer_id, [])[:limit]

    def orders_with_sku(self, sku: str, limit: int) -> list[UUID]:
        return self.rows.orders_with_sku.get(sku, [])[:limit]


def candidates(
    parcel: ReturnState,
    lookups: CandidateLookups,
    load_order: Callable[[UUID], Order | None],
    load_return: Callable[[UUID], Return | None],
    *,
    wide: bool,
) -> list[Candidate]:
    """Orders the parcel may belong to, best source first, each once. ``wide`` adds the
    guesses (the customer's other orders, recent delivered orders of the SKU)."""
    found: dict[UUID, Candidate] = {}
    items = parcel.received_items

    def consider(order_id: UUID | None, by: str, reasons: dict[int, ReasonCode]) -> None:
        if order_id is None or order_id in found:
            return
        order = load_order(order_id)
        if order is None:
            return
        found[order_id] = Candidate(order, by, fit(order, items, reasons), reasons)

    for item in items:
        if item.serial:
            for sale in lookups.sales_of_serial(item.serial):
                consider(sale.order_id, "serial", {})
    if parcel.blind_claimed_rma:
        claimed = _claimed_return(parcel.blind_claimed_rma, lookups, load_return)
        if claimed is not None and claimed.state.order_id is not None:
            reasons = {n: line.reason for n, line in claimed.state.lines.items()}
            consider(claimed.state.order_id, "claimed_rma", reasons)
    if parcel.blind_order_hint:
        consider(order_id_for(parcel.blind_order_hint), "order_hint", {})
    if wide:
        customers = {c.order.state.customer_id for c in found.values()}
        for customer_id in sorted(customers):
            for order_id in lookups.orders_of_customer(customer_id, SEARCH_LIMIT):
                consider(order_id, "customer", {})
        for sku in sorted({item.sku for item in items}):
            for order_id in lookups.orders_with_sku(sku, SEARCH_LIMIT):
                consider(order_id, "sku", {})
    return list(found.values())


def _claimed_return(
    rma_number: str, lookups: CandidateLookups, load_return: Callable[[UUID], Return | None]
) -> Return | None:
    try:
        return_id = lookups.return_id_for_rma(RmaNumber(rma_number))
    except InvalidValue:
        return None  # not even shaped like one of ours
    return load_return(return_id) if return_id is not None else None


def automatic_match(found: Sequence[Candidate]) -> Candidate | None:
    """The one order the parcel proves or names and fits whole; None when none or several."""
    fitting = [c for c in found if c.by in AUTOMATIC and c.fit.complete]
    return fitting[0] if len(fitting) == 1 else None


def suggestions(found: Sequence[Candidate], limit: int = SUGGESTIONS_LIMIT) -> list[Candidate]:
    """Orders worth a look, best first: whole fits before partial ones, then by source; a
    guess (customer, SKU) only for an order delivered (or sold at a counter)."""
    useful = [
        c
        for c in found
        if c.fit.lines
        and (
            c.by in AUTOMATIC
            or c.order.state.delivered_at is not None
            or c.order.state.channel is Channel.STORE
        )
    ]
    useful.sort(key=lambda c: (not c.fit.complete, SOURCES.index(c.by)))
    return useful[:limit]
