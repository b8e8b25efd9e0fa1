"""Queries the API and the integrations read the write side through: aggregates and views
of them, always as stored (the read models may lag)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.aggregate import Aggregate
from domain.errors import NotFound, UnknownStoreCreditCode
from domain.events import DomainEvent
from domain.handlers.blind_matching import (
    SEARCH_LIMIT,
    Candidate,
    PrefetchedLookups,
    candidates,
    suggestions,
)
from domain.lookups import Lookups
from domain.order import Order, order_id_for
from domain.policy import PolicyBook, add_months
from domain.returns import Return, ReturnStatus
from domain.store_credit import StoreCreditAccount, store_credit_id_for
from domain.values import Money, RmaNumber

AnyAggregate = Aggregate[Any]


class ReturnsQueries:
    """Read side of ``ReturnsService`` (a base of it): what it needs, it declares here."""

    policy_book: PolicyBook
    clock: Callable[[], datetime]

    @property
    def lookups(self) -> Lookups:
        raise NotImplementedError

    def stored_events(self, aggregate_id: UUID) -> list[DomainEvent]:
        raise NotImplementedError

    def load(self, cls: type[AnyAggregate], aggregate_id: UUID) -> AnyAggregate | None:
        raise NotImplementedError

    def get_order(self, order_number: str) -> Order:
        order = self.load(Order, order_id_for(order_number))
        if not isinstance(order, Order):
            raise NotFound(f"order {order_number} is unknown")
        return order

    def get_store_credit(self, customer_id: str) -> StoreCreditAccount:
        """The customer's account as stored; one never credited is an empty account."""
        found = self.load(StoreCreditAccount, store_credit_id_for(customer_id))
        if not isinstance(found, StoreCreditAccount):
            return StoreCreditAccount.open(customer_id)
        return found

    def get_store_credit_by_code(self, code: str) -> StoreCreditAccount:
        """The account a store-credit code spends; NotFound for a code never issued."""
        customer_id = self.lookups.customer_of_store_credit_code(code)
        if customer_id is None:
            raise UnknownStoreCreditCode(f"store-credit code {code} is unknown")
        return self.get_store_credit(customer_id)

    def get_return(self, return_id: UUID) -> Return:
        found = self.load(Return, return_id)
        if not isinstance(found, Return):
            raise NotFound(f"return {return_id} is unknown")
        return found

    def get_return_of_refund(self, refund_id: str) -> Return:
        return_id = self.lookups.return_id_for_refund(refund_id)
        if return_id is None:
            raise NotFound(f"refund {refund_id} is unknown")
        return self.get_return(return_id)

    def get_return_by_rma(self, rma_number: str) -> Return:
        return_id = self.lookups.return_id_for_rma(RmaNumber(rma_number))
        if return_id is None:
            raise NotFound(f"RMA {rma_number} is unknown")
        return self.get_return(return_id)

    def order_number_of(self, order_id: UUID) -> str | None:
        """The number of the order with this id, None if there is none."""
        order = self.load(Order, order_id)
        return order.state.order_number if isinstance(order, Order) else None

    def events_of(self, return_id: UUID) -> list[dict[str, Any]]:
        """The RMA's own events: its authoritative timeline (the read model may lag)."""
        return [
            {
                "version": e.originator_version,
                "type": e.type_name,
                "at": e.timestamp.isoformat(),
                "actor": e.cause.actor,
                "source": e.cause.source,
                "correlation_id": e.cause.correlation_id,
            }
            for e in self.stored_events(return_id)
        ]

    def order_view(self, order_number: str) -> dict[str, Any]:
        """The order with what each line can still return, for the portal and the counter."""
        order = self.get_order(order_number)
        s = order.state
        returnable = order.returnable_quantities()
        return {
            "order_id": str(order.id),
            "order_number": s.order_number,
            "customer_id": s.customer_id,
            "channel": s.channel.value,
            "placed_at": s.placed_at.isoformat() if s.placed_at else None,
            "delivered_at": s.delivered_at.isoformat() if s.delivered_at else None,
            "cancelled": s.cancelled,
            "currency": s.currency,
            "lines": [
                {
                    "line_no": line.line_no,
                    "sku": line.sku,
                    "name": line.name,
                    "quantity": line.quantity,
                    "fulfilled": s.fulfilled.get(line.line_no, 0),
                    "returnable_quantity": returnable.get(line.line_no, 0),
                    "unit_price": line.unit_price.model_dump(mode="json"),
                    "returnable": line.returnable,
                    "category": line.category,
                    "supplier": line.supplier,
                }
                for line in s.lines.values()
            ],
            "payments": [
                {
                    "payment_id": p.payment_id,
                    "method": p.method.value,
                    "amount": p.amount.model_dump(mode="json"),
                    "refunded": order.refunded_by_payment()
                    .get(p.payment_id, Money.zero(s.currency))
                    .model_dump(mode="json"),
                }
                for p in s.payments.values()
            ],
            "refunded_total": order.total_refunded().model_dump(mode="json"),
            "returns": [str(r) for r in self.lookups.returns_of_order(order.id)],
        }

    def serial_lookup(self, serial: str, at: datetime | None = None) -> list[dict[str, Any]]:
        """Where a serial number was sold, for how much, and whether it is under warranty."""
        now = at or self.clock()
        sales = []
        for row in self.lookups.sales_of_serial(serial):
            order = self.load(Order, row.order_id)
            if not isinstance(order, Order):
                continue
            line = order.line(row.line_no)
            sold_at = order.state.placed_at
            start = order.reference_date() or sold_at
            policy = self.policy_book.policy_for(line.category, order.state.channel)
            months = (
                line.warranty_months if line.warranty_months is not None else policy.warranty_months
            )
            until = add_months(start, months) if start else None
            sales.append(
                {
                    "serial": serial,
                    "order_number": order.state.order_number,
                    "customer_id": order.state.customer_id,
                    "line_no": line.line_no,
                    "sku": line.sku,
                    "sold_at": sold_at.isoformat() if sold_at else None,
                    "value": line.unit_price.model_dump(mode="json"),
                    "warranty_months": months,
                    "warranty_until": until.isoformat() if until else None,
                    "under_warranty": bool(until and now <= until),
                }
            )
        return sales

    def open_blind_returns(self, limit: int = 50, offset: int = 0) -> list[Return]:
        return [self.get_return(rid) for rid in self.lookups.open_blind_returns(limit, offset)]

    # ------------------------------------------------------------ blind returns (issue 11)
    def blind_suggestions(self, rma: Return, *, wide: bool = True) -> list[dict[str, Any]]:
        """Where a waiting blind parcel may belong, best first: one entry per order line its
        items would take (``by``: serial, claimed_rma, order_hint, customer or sku;
        ``whole``: every item of the parcel fits that order). Without ``wide``, only what
        the parcel itself shows (serials, the RMA or order it names): a few reads, not dozens."""

        def load_order(order_id: UUID) -> Order | None:
            found = self.load(Order, order_id)
            return found if isinstance(found, Order) else None

        def load_return(return_id: UUID) -> Return | None:
            found = self.load(Return, return_id)
            return found if isinstance(found, Return) else None

        found = candidates(rma.state, self.lookups, load_order, load_return, wide=wide)
        return suggestion_views(found)

    def _load_many(self, ids: Sequence[UUID]) -> dict[UUID, AnyAggregate | None]:
        raise NotImplementedError

    def blind_suggestions_of_page(
        self, return_ids: Sequence[UUID]
    ) -> dict[UUID, list[dict[str, Any]]]:
        """``blind_suggestions(wide=True)`` of a page of waiting blind parcels, by return id,
        in three reads whatever the page's size: the parcels, every lookup their matching
        reads (``blind_candidate_rows``), and every order and claimed RMA that names.
        A parcel no longer waiting gets none, as on its own page."""
        parcels = [
            rma
            for rma in self._load_many(list(return_ids)).values()
            if isinstance(rma, Return) and rma.state.status is ReturnStatus.BLIND_UNMATCHED
        ]
        if not parcels:
            return {}
        keys = PrefetchedLookups.keys_of([p.state for p in parcels])
        rows = self.lookups.blind_candidate_rows(**keys, limit=SEARCH_LIMIT)
        wanted = {
            *keys["order_ids"],
            *(sale.order_id for sales in rows.sales.values() for sale in sales),
            *rows.returns_of_rma.values(),
            *rows.order_of_return.values(),
            *(o for orders in rows.orders_of_customer.values() for o in orders),
            *(o for orders in rows.orders_with_sku.values() for o in orders),
        }
        loaded = self._load_many(sorted(wanted)) if wanted else {}
        orders = {k: v for k, v in loaded.items() if isinstance(v, Order)}
        returns = {k: v for k, v in loaded.items() if isinstance(v, Return)}
        lookups = PrefetchedLookups(rows)
        return {
            parcel.id: suggestion_views(
                candidates(parcel.state, lookups, orders.get, returns.get, wide=True)
            )
            for parcel in parcels
        }

    def review_holds_of_page(self, return_ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
        """Why each RMA of a page was held for review (``review_rules``, ``review_reason``),
        read in one round trip; RMAs that were never held are left out."""
        return {
            rma.id: {
                "review_rules": list(rma.state.review_rules),
                "review_reason": rma.state.review_reason,
            }
            for rma in self._load_many(list(return_ids)).values()
            if isinstance(rma, Return) and rma.state.review_reason is not None
        }


def suggestion_views(found: Sequence[Candidate]) -> list[dict[str, Any]]:
    """The suggestions worth showing, one entry per order line the parcel's items take."""
    return [
        {
            "order_number": c.order.state.order_number,
            "line_no": line.line_no,
            "sku": c.order.line(line.line_no).sku,
            "quantity": line.quantity,
            "serial": line.serial,
            "by": c.by,
            "whole": c.fit.complete,
            "customer_id": c.order.state.customer_id,
            "delivered_at": (
                c.order.state.delivered_at.isoformat() if c.order.state.delivered_at else None
            ),
        }
        for c in suggestions(found)
        for line in c.fit.lines
    ]
