"""Lookup rows kept beside the events, and the port that reads them.

The rows are derived from aggregate state at commit and written in the same transaction
as the events (the adapter does the SQL), so a lookup is never ahead of or behind the
event store; unique keys on them are how RMA numbers stay unique under concurrency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID


@dataclass(frozen=True)
class OrderRow:
    order_id: UUID
    order_number: str
    customer_id: str
    customer_email: str | None
    placed_at: datetime | None


@dataclass(frozen=True)
class SerialRow:
    serial: str
    order_id: UUID
    line_no: int


@dataclass(frozen=True)
class ReturnRow:
    return_id: UUID
    rma_number: str | None
    order_id: UUID | None
    customer_id: str | None
    status: str
    blind: bool
    authorized_at: datetime | None
    updated_at: datetime | None
    created_at: datetime | None = None
    """When the return was opened (requested, recorded in a store, or its parcel found)."""


@dataclass(frozen=True)
class RefundRow:
    """A refund and where it stands with the provider (``requested``, ``settled``, ``failed``),
    so the refunds still waiting can be found without loading every RMA."""

    refund_id: str
    return_id: UUID
    status: str = "requested"
    requested_at: datetime | None = None
    amount: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class RmaNumberRow:
    rma_number: str
    return_id: UUID


@dataclass(frozen=True)
class DeadlineRow:
    """What an RMA waits for, so sweeps find what ran out without loading every RMA:
    ``ship_clock_from`` while it is authorized and waits for its parcel (the policy's
    expiry counts from there), ``offer_expires_at`` while a keep-the-item offer runs;
    both None once neither applies."""

    return_id: UUID
    ship_clock_from: datetime | None = None
    offer_expires_at: datetime | None = None


@dataclass(frozen=True)
class Deadline:
    """One RMA found by a deadline lookup, and the time it was found by."""

    return_id: UUID
    since: datetime


@dataclass(frozen=True)
class OrderSkuRow:
    """An order holds a SKU: how a blind parcel's likely orders are found by what is in it."""

    sku: str
    order_id: UUID
    placed_at: datetime | None


@dataclass(frozen=True)
class StoreCreditCodeRow:
    """A store-credit code and the customer whose account it spends."""

    code: str
    customer_id: str


@dataclass
class BlindCandidateRows:
    """What the blind-parcel matching rules look up, for a page of parcels at once: sales
    by serial, returns by RMA number (with their order), orders per customer and per SKU
    (most recently placed first, at most the limit asked each)."""

    sales: dict[str, list[SerialRow]] = field(default_factory=dict)
    returns_of_rma: dict[str, UUID] = field(default_factory=dict)
    order_of_return: dict[UUID, UUID] = field(default_factory=dict)
    orders_of_customer: dict[str, list[UUID]] = field(default_factory=dict)
    orders_with_sku: dict[str, list[UUID]] = field(default_factory=dict)


@dataclass
class LookupRows:
    rma_numbers: list[RmaNumberRow] = field(default_factory=list)
    orders: list[OrderRow] = field(default_factory=list)
    serials: list[SerialRow] = field(default_factory=list)
    returns: list[ReturnRow] = field(default_factory=list)
    refunds: list[RefundRow] = field(default_factory=list)
    deadlines: list[DeadlineRow] = field(default_factory=list)
    order_skus: list[OrderSkuRow] = field(default_factory=list)
    store_credit_codes: list[StoreCreditCodeRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.rma_numbers
            or self.orders
            or self.serials
            or self.returns
            or self.refunds
            or self.deadlines
            or self.order_skus
            or self.store_credit_codes
        )


@dataclass(frozen=True)
class CommandRecord:
    """An idempotency key and the JSON result of the command it first ran."""

    key: str
    result: bytes


class Lookups(Protocol):
    def order_id_for_number(self, order_number: str) -> UUID | None: ...

    def orders_of_customer(self, customer_id: str, limit: int) -> list[UUID]: ...

    def orders_of_email(self, email: str, limit: int) -> list[UUID]: ...

    def sales_of_serial(self, serial: str) -> list[SerialRow]: ...

    def return_id_for_rma(self, rma_number: str) -> UUID | None: ...

    def return_id_for_refund(self, refund_id: str) -> UUID | None: ...

    def returns_of_order(self, order_id: UUID) -> list[UUID]: ...

    def open_blind_returns(self, limit: int, offset: int) -> list[UUID]: ...

    def awaiting_parcel_since(
        self, cutoff: datetime, limit: int, after: Deadline | None = None
    ) -> list[Deadline]:
        """Authorized RMAs waiting for their parcel since ``cutoff`` or earlier, oldest
        first, from just past ``after`` (a page's last row)."""
        ...

    def offers_expired_by(self, at: datetime, limit: int) -> list[Deadline]:
        """RMAs whose keep-the-item offer runs out before ``at``, earliest first."""
        ...

    def command_result(self, key: str) -> bytes | None: ...

    def command_results(self, keys: Sequence[str]) -> dict[str, bytes]: ...

    def orders_with_sku(self, sku: str, limit: int) -> list[UUID]:
        """Orders holding ``sku``, the most recently placed first."""
        ...

    def customer_of_store_credit_code(self, code: str) -> str | None:
        """The customer whose account ``code`` spends, or None for a code never issued."""
        ...

    def returns_of_customer_since(
        self, customer_id: str, since: datetime, until: datetime | None = None
    ) -> list[UUID]:
        """The customer's returns opened at ``since`` or later, and before ``until`` when
        given (review rules count them; a simulation counts them as they stood)."""
        ...

    def blind_candidate_rows(
        self,
        serials: Sequence[str],
        rma_numbers: Sequence[str],
        order_ids: Sequence[UUID],
        skus: Sequence[str],
        limit: int,
    ) -> BlindCandidateRows:
        """In one round trip: the sales of ``serials``, the returns of ``rma_numbers``, and
        the orders of ``skus`` and of the customers of every order those and ``order_ids``
        name (the sources ``blind_matching.candidates`` reads one by one)."""
        ...

    def load_events(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        """Stored events of many aggregates in one round trip, oldest first."""
        ...
