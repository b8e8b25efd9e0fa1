"""What the customer-service pages share: running a command from a form post once, at the
version the person read, as the signed-in person; and saying things in words (money,
events, refusals).

A form carries a one-time ``form_id`` drawn when the page was rendered. It becomes the
command's idempotency key in the service's command log, the very mechanism behind the API's
``Idempotency-Key``: a double click, a resent post or a back-and-submit runs the command
once and answers the first outcome again. A command on an RMA also carries the ``version``
the page showed; the service checks it inside the command's own transaction (as it checks
``If-Match``), so a stale page is refused instead of acting on a newer state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import Request

from adapters.driving.api.context import Api
from adapters.driving.api.problems import status_of
from adapters.driving.console.once import (
    console_ctx,
    digest,
    earlier_outcome,
    fingerprint_of,
    money,
)
from adapters.driving.console.sessions import Staff
from domain.application import Ctx, Expected, Outcome
from domain.commands import Command
from domain.errors import DomainError, IdempotencyKeyReused, VersionMismatch
from domain.events import DomainEvent
from domain.returns import Return

STALE = "this RMA changed since you opened it: reload the page and check it again"
RESENT = "this form was already sent with other choices: reload the page to act again"
MAX_FORM_ID = 100


class FormRefused(Exception):
    """A form's command refused: ``field`` names the field it concerns (None: the form)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def posted_version(fields: Mapping[str, str]) -> int:
    """The RMA version the page showed (hidden field): without it the command cannot be
    held to what the person read, so it is refused rather than run on whatever is there."""
    value = fields.get("version", "")
    if not value.isdigit() or len(value) > 18:
        raise FormRefused(409, STALE)
    return int(value)


def run_form_command(
    api: Api,
    staff: Staff,
    request: Request,
    fields: Mapping[str, str],
    name: str,
    command: Command,
    *,
    rma: Return | None = None,
    version: int | None = None,
    then: Callable[[Ctx, Command], None] | None = None,
) -> Outcome:
    """Run ``command`` once per form id, as ``staff``; a domain refusal is a ``FormRefused``
    saying in words what went wrong (a stale version: reload)."""
    form_id = fields.get("form_id", "")
    if not form_id or len(form_id) > MAX_FORM_ID:
        raise FormRefused(409, "this form is incomplete: reload the page and try again")
    route: Any = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    scope = [staff.principal.name, template, sorted(request.path_params.items())]
    # Keyed by the person and the form: another person's form id is another command.
    key = "console:" + digest(scope, form_id)[:48]
    fingerprint = fingerprint_of(scope, fields)
    try:
        outcome = earlier_outcome(api, key, fingerprint)
        if outcome is not None:
            return outcome
        expected = (
            Expected(rma.id, frozenset({version}))
            if rma is not None and version is not None
            else None
        )
        ctx = console_ctx(staff, key, fingerprint, expected)
        with api.metrics.timed(name):
            outcome = api.service.run(ctx, command)
    except VersionMismatch as stale:
        raise FormRefused(409, STALE) from stale
    except IdempotencyKeyReused as reused:
        # The same page's form sent again with other choices (back, then another button).
        raise FormRefused(409, RESENT) from reused
    except DomainError as refused:
        raise FormRefused(status_of(refused), refused.message) from refused
    if then is not None:
        then(ctx, command)
    return outcome


# ---------------------------------------------------------------- in words
def words(code: str | None) -> str:
    return (code or "").replace("_", " ")


def _m(event: DomainEvent, name: str) -> str:
    return money(getattr(event, name, None))


# What each RMA event says to a person reading the timeline; the event's own details follow.
EVENT_WORDS: dict[str, Callable[[Any], str]] = {
    "rma.requested": lambda e: f"Return requested ({words(e.channel)}, {len(e.lines)} line(s))",
    "rma.authorized": lambda e: (
        f"Authorized as {e.rma_number}, expected refund"
        f" {_m(e, 'expected_refund')}, to {e.destination_warehouse}"
    ),
    "rma.held_for_review": lambda e: f"Held for review: {e.reason}",
    "rma.rejected": lambda e: f"Refused: {e.reason}",
    "rma.label_issued": lambda e: f"Label {e.label_reference} issued ({e.carrier})",
    "rma.parcel_received": lambda e: f"Parcel {e.receipt_id} received at {e.warehouse_id}",
    "rma.unexpected_parcel_received": lambda e: (
        f"Parcel {e.receipt_id} arrived while the RMA was {words(e.state_at_arrival)}"
    ),
    "rma.blind_return_detected": lambda e: (
        f"Parcel {e.receipt_id} arrived at {e.warehouse_id} with no known RMA"
    ),
    "rma.blind_return_matched": lambda e: (
        f"Matched to order {e.order_number} by {words(e.matched_by)}, now {e.rma_number}"
    ),
    "rma.in_store_return_recorded": lambda e: f"Returned at store {e.store_id} as {e.rma_number}",
    "rma.items_inspected": lambda e: (
        "Inspected: "
        + ", ".join(f"{i.quantity} x {i.sku} {words(i.condition)}" for i in e.items)
        + f"; refund due {_m(e, 'refund_due')}"
    ),
    "rma.refund_requested": lambda e: (
        f"Refund {e.refund_id} of {_m(e, 'amount')} sent to the payment provider"
    ),
    "rma.refund_settled": lambda e: f"Refund {e.refund_id} paid ({_m(e, 'amount')})",
    "rma.refund_failed": lambda e: f"Refund {e.refund_id} failed: {e.reason}",
    "rma.refund_payment_settled": lambda e: f"Payment {e.payment_id} paid back {_m(e, 'amount')}",
    "rma.refund_discrepancy": lambda e: f"Settlement discrepancy on {e.refund_id}: {e.reason}",
    "rma.store_credit_issued": lambda e: f"Store credit of {_m(e, 'amount')} issued",
    "rma.exchange_ordered": lambda e: f"Exchange ordered: {e.replacement_order_number}",
    "rma.instant_exchange_charged": lambda e: (
        f"Items never returned for {e.replacement_order_number}: {_m(e, 'amount')} owed"
    ),
    "rma.resolution_changed": lambda e: (
        f"Settlement changed from {words(e.from_refund_method)} to {words(e.to_refund_method)}"
    ),
    "rma.keep_item_offered": lambda e: f"Offered to keep the item for {_m(e, 'refund_amount')}",
    "rma.keep_item_accepted": lambda e: "Keep-the-item offer accepted",
    "rma.keep_item_lapsed": lambda e: "Keep-the-item offer lapsed",
    "rma.repair_sent": lambda e: f"Sent to repair at {e.repair_center}",
    "rma.repair_completed": lambda e: f"Repair done: {words(e.outcome)}",
    "rma.repaired_item_restocked": lambda e: f"Repaired item back in stock at {e.location_id}",
    "rma.vendor_return_shipped": lambda e: f"Shipped back to {e.supplier} ({e.vendor_rma})",
    "rma.supplier_credit_received": lambda e: f"Supplier credit of {_m(e, 'amount')} received",
    "rma.vendor_item_returned": lambda e: f"The supplier sent the item back to {e.location_id}",
    "rma.blind_inspection_assessed": lambda e: (
        f"Earlier inspection priced: refund due {_m(e, 'refund_due')}"
    ),
    "rma.closed": lambda e: f"Closed ({words(e.outcome)})",
    "rma.cancelled": lambda e: f"Cancelled: {e.reason}",
    "rma.expired": lambda e: f"Expired after {e.authorized_days} days unshipped",
    "rma.blind_return_linked": lambda e: f"Linked to {e.linked_rma_number or e.linked_return_id}",
    "rma.blind_return_closed_unidentified": lambda e: (
        f"Closed unidentified after {e.waited_days} days"
    ),
}


def describe(event: DomainEvent) -> str:
    """What happened, in words; an event with no sentence of its own says its type."""
    saying = EVENT_WORDS.get(event.type_name)
    if saying is None:
        return words(event.type_name.removeprefix("rma.")).capitalize()
    try:
        return saying(event)
    except AttributeError:  # an older event without a field the sentence uses
        return words(event.type_name.removeprefix("rma.")).capitalize()


def timeline(api: Api, rma: Return) -> list[dict[str, Any]]:
    """The RMA's own events (not the lagging read model), each with when, what and who."""
    return [
        {
            "version": e.originator_version,
            "at": e.timestamp,
            "what": describe(e),
            "actor": e.cause.actor,
            "source": e.cause.source,
        }
        for e in api.service.stored_events(rma.id)
    ]
