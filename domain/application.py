"""The application service: one method per command, plus the queries the API needs.

Every command runs in a ``UnitOfWork``; its events, the lookup rows derived from them, its
idempotency key and (for inbound messages) the consumed positions commit in one
transaction. Conflicts (another writer got the aggregate version or the RMA number first)
retry the whole unit on fresh state, so guards are always checked against the truth.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID, uuid4

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, ProcessRecorder, Tracking
from eventsourcing.utils import get_topic
from pydantic import BaseModel

from domain.aggregate import Aggregate
from domain.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    DomainError,
    IdempotencyKeyReused,
    InvalidCommand,
    InvalidTransition,
    NotFound,
    VersionMismatch,
)
from domain.events import (
    BlindReturnMatched,
    Cause,
    DomainEvent,
    FulfilledLine,
    InspectedItem,
    InStoreReturnRecorded,
    OrderLine,
    OrderLinesFulfilled,
    OrderPlaced,
    Payment,
    ReceivedItem,
    RefundAllocation,
    RefundFailed,
    RefundRequested,
    RefundSettled,
    ReturnAuthorized,
)
from domain.inventory import Inventory, inventory_id_for
from domain.lookups import (
    LookupRows,
    Lookups,
    OrderRow,
    RefundRow,
    ReturnRow,
    RmaNumberRow,
    SerialRow,
)
from domain.order import Order, order_id_for
from domain.policy import PolicyBook, add_months, allocate_proportionally
from domain.returns import (
    CounterCheck,
    RequestedLine,
    Return,
    ReturnStatus,
    blind_return_id_for,
    quantities_of,
    store_return_id_for,
)
from domain.serialization import OrjsonTranscoder, PydanticMapper
from domain.unit_of_work import UnitOfWork
from domain.values import (
    Channel,
    Money,
    PaymentMethod,
    RefundMethod,
    ReturnChannel,
    ReturnMethod,
    RmaNumber,
)

log = logging.getLogger(__name__)

R = TypeVar("R")
AnyAggregate = Aggregate[Any]
MAX_ATTEMPTS = 8
AGGREGATE_CLASSES: dict[str, type[AnyAggregate]] = {
    "order": Order,
    "return": Return,
    "inventory": Inventory,
}


@dataclass(frozen=True)
class Expected:
    """The command may change ``aggregate_id`` only while it is at one of ``versions``.

    Checked inside the command's unit of work against the aggregate as loaded there, and
    again on every rerun after a conflict: two callers holding the same version cannot
    both pass, because the loser's rerun sees the winner's events.
    """

    aggregate_id: UUID
    versions: frozenset[int]

    def check(self, aggregate: AnyAggregate | None) -> None:
        current = aggregate.version if aggregate is not None else 0
        if current not in self.versions:
            expected = ", ".join(str(v) for v in sorted(self.versions)) or "none"
            raise VersionMismatch(
                f"{self.aggregate_id} is at version {current}, not {expected}", current
            )


@dataclass(frozen=True)
class Ctx:
    """Who asks, when, under which idempotency key (an inbound message id or HTTP key), and
    the version the caller expects the aggregate to be at (an HTTP ``If-Match``).

    ``fingerprint`` says what was asked under the key (an HTTP request's method, route and
    body, hashed): it is recorded with the result, and the key reused with another
    fingerprint is refused (``IdempotencyKeyReused``) instead of answering another request's
    result.
    """

    cause: Cause
    at: datetime | None = None
    idempotency_key: str | None = None
    expected: Expected | None = None
    fingerprint: str | None = None


class Outcome(BaseModel):
    """The result of a command, stored with its idempotency key so a retry gets the same one."""

    aggregate_id: UUID
    status: str
    rma_number: str | None = None
    code: str | None = None
    message: str | None = None
    refund_id: str | None = None
    amount: Money | None = None


class _Recorded(Outcome):
    """An outcome as the command log keeps it: with the fingerprint of its request."""

    fingerprint: str | None = None


def recorded(outcome: Outcome, fingerprint: str | None) -> bytes:
    """What the command log stores for a key: the outcome, and what was asked."""
    if fingerprint is None:
        return outcome.model_dump_json().encode()
    return (
        _Recorded.model_construct(**dict(outcome), fingerprint=fingerprint)
        .model_dump_json(warnings=False)
        .encode()
    )


def replayed(stored: bytes, fingerprint: str | None) -> Outcome | IdempotencyKeyReused:
    """A key's recorded outcome, for a repeat of the request that ran it; a result recorded
    without a fingerprint (an inbound message, an older row) answers any repeat."""
    outcome = _Recorded.model_validate_json(stored)
    if fingerprint is not None and outcome.fingerprint not in (None, fingerprint):
        return IdempotencyKeyReused(
            "this Idempotency-Key was used for another request: use a new key for a new one"
        )
    return Outcome.model_validate(outcome.model_dump(exclude={"fingerprint"}))


class StaleRead(Exception):
    """A command was refused on state that has changed since: run the unit again."""


class ReturnsService(Application[UUID]):
    name = "oms"
    env: ClassVar[dict[str, str]] = {
        "MAPPER_TOPIC": get_topic(PydanticMapper),
        "TRANSCODER_TOPIC": get_topic(OrjsonTranscoder),
    }
    log_section_size = 1000

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        policy_book: PolicyBook | None = None,
        default_warehouse: str = "WH-1",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(env)
        self.policy_book = policy_book or PolicyBook()
        self.default_warehouse = default_warehouse
        self.clock = clock or (lambda: datetime.now(UTC))

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    @property
    def lookups(self) -> Lookups:
        recorder = self.recorder
        if not hasattr(recorder, "return_id_for_rma"):
            raise TypeError(
                f"{type(recorder).__name__} keeps no lookups: configure PROCESS_RECORDER_TOPIC"
            )
        return cast(Lookups, recorder)

    # ================================================================ running units
    def run(self, ctx: Ctx, command: Callable[[UnitOfWork, datetime], Outcome]) -> Outcome:
        """Run one command in its own transaction, exactly once per idempotency key."""
        results = self.run_batch([(ctx, command)])
        result = results[0]
        if isinstance(result, DomainError):
            raise result
        return result

    def run_batch(
        self,
        commands: Sequence[tuple[Ctx, Callable[[UnitOfWork, datetime], Outcome]]],
        trackings: Sequence[Tracking] = (),
        prefetch: Sequence[UUID] = (),
    ) -> list[Outcome | DomainError]:
        """Run many commands in one transaction; refused ones are returned, not raised.

        ``prefetch`` names aggregates the commands will read, loaded in one round trip
        instead of one query each; idempotency keys are checked in one query too.
        """
        for attempt in range(MAX_ATTEMPTS):
            if trackings and self._already_tracked(trackings):
                # The whole batch was committed before (a redelivery): nothing to do.
                return [self._replayed(ctx) for ctx, _ in commands]
            uow = UnitOfWork(self._load)
            uow.trackings = list(trackings)
            uow.optimistic = attempt == 0
            keys = [ctx.idempotency_key for ctx, _ in commands if ctx.idempotency_key]
            if len(keys) > 1:
                uow.prior_results = self.lookups.command_results(keys)
            elif uow.optimistic:
                # A lone command claims its key at commit; a key used before surfaces as
                # a conflict there, and the rerun returns the first result.
                uow.prior_results = {}
            if prefetch:
                uow.preload(self._load_many(prefetch))
            try:
                results = [self._run_in(uow, ctx, command) for ctx, command in commands]
                self._commit(uow)
            except (StaleRead, IntegrityError) as conflict:
                log.debug("attempt %d lost a race, retrying: %r", attempt + 1, conflict)
                if "idempotency key" in str(conflict) and attempt == 0:
                    continue  # a repeat of a finished command: the rerun just reads its result
                # Jittered backoff, so racing writers stop colliding in lockstep.
                time.sleep(min(0.002 * 2**attempt, 0.1) * random.uniform(0.5, 1.5))
                continue
            return results
        raise ConcurrencyConflict(
            f"gave up after {MAX_ATTEMPTS} attempts: the aggregates kept changing under us"
        )

    def _run_in(
        self, uow: UnitOfWork, ctx: Ctx, command: Callable[[UnitOfWork, datetime], Outcome]
    ) -> Outcome | DomainError:
        key = ctx.idempotency_key
        if key is not None:
            prior = uow.command_results.get(key)
            if prior is None:
                prior = (
                    uow.prior_results.get(key)
                    if uow.prior_results is not None
                    else self.lookups.command_result(key)
                )
            if prior is not None:
                return replayed(prior, ctx.fingerprint)
        try:
            with uow.isolated() as read:
                if ctx.expected is not None:
                    # Loaded into the unit here, so the command sees the very same aggregate.
                    ctx.expected.check(uow.get(Aggregate, ctx.expected.aggregate_id))
                outcome = command(uow, ctx.at or self.clock())
        except DomainError as refused:
            # Aggregates are read one query at a time, so a refusal may rest on a mix of
            # old and new state; only a refusal of current state is final.
            if self._any_stale(uow, read):
                raise StaleRead from refused
            if key is not None and uow.prior_results == {} and uow.optimistic:
                prior = self.lookups.command_result(key)  # the key was not checked yet
                if prior is not None:
                    return replayed(prior, ctx.fingerprint)
            return refused
        if key is not None:
            uow.command_results[key] = recorded(outcome, ctx.fingerprint)
        return outcome

    def _any_stale(self, uow: UnitOfWork, ids: set[UUID]) -> bool:
        for aggregate_id in ids:
            if aggregate_id not in uow.read_versions:
                continue
            latest = self.recorder.select_events(aggregate_id, desc=True, limit=1)
            current = latest[0].originator_version if latest else 0
            if current != uow.read_versions[aggregate_id]:
                return True
        return False

    def _replayed(self, ctx: Ctx) -> Outcome | DomainError:
        if ctx.idempotency_key is not None:
            prior = self.lookups.command_result(ctx.idempotency_key)
            if prior is not None:
                return replayed(prior, ctx.fingerprint)
        return AlreadyExists("this message was already processed")

    def _already_tracked(self, trackings: Sequence[Tracking]) -> bool:
        return all(
            cast(ProcessRecorder, self.recorder).has_tracking_id(
                t.application_name, t.notification_id
            )
            for t in trackings
        )

    def _commit(self, uow: UnitOfWork) -> None:
        changed = uow.changed()
        if not changed and not uow.command_results and not uow.trackings:
            return
        rows = lookup_rows_for(changed)  # before collecting: it reads the pending events
        processing = ProcessingEvent[UUID]()
        processing.collect_events(*changed)
        processing.saved_kwargs.update(
            lookup_rows=rows,
            command_results=dict(uow.command_results),
            trackings=list(uow.trackings),
        )
        self._record(processing)

    def _load_many(self, ids: Sequence[UUID]) -> dict[UUID, AnyAggregate | None]:
        stored = self.lookups.load_events(ids)
        loaded: dict[UUID, AnyAggregate | None] = dict.fromkeys(ids)
        for aggregate_id, rows in stored.items():
            events = [cast(DomainEvent, self.mapper.to_domain_event(row)) for row in rows]
            cls = AGGREGATE_CLASSES[events[0].aggregate_kind]
            loaded[aggregate_id] = cls.replay(aggregate_id, events)
        return loaded

    def _load(self, cls: type[AnyAggregate], aggregate_id: UUID) -> AnyAggregate | None:
        events = cast(list[DomainEvent], list(self.events.get(aggregate_id)))
        if not events:
            return None
        # The stored kind decides the class: a caller asking for the base class (a version
        # check) or for the wrong kind gets the real aggregate, which ``get`` then type-checks.
        return AGGREGATE_CLASSES[events[0].aggregate_kind].replay(aggregate_id, events)

    # ================================================================ helpers for commands
    def _order(self, uow: UnitOfWork, order_number: str) -> Order:
        order = uow.get(Order, order_id_for(order_number))
        if order is None:
            raise NotFound(f"order {order_number} is unknown")
        return order

    def _return(self, uow: UnitOfWork, return_id: UUID) -> Return:
        found = uow.get(Return, return_id)
        if found is None:
            raise NotFound(f"return {return_id} is unknown")
        return found

    def _return_by_rma(self, uow: UnitOfWork, rma_number: str) -> Return:
        return_id = self.lookups.return_id_for_rma(RmaNumber(rma_number))
        if return_id is None:
            # It may have been authorized earlier in this very unit.
            for aggregate in uow.aggregates.values():
                if isinstance(aggregate, Return) and aggregate.state.rma_number == rma_number:
                    return aggregate
            raise NotFound(f"RMA {rma_number} is unknown")
        return self._return(uow, return_id)

    def _order_of(self, uow: UnitOfWork, rma: Return) -> Order:
        if rma.state.order_id is None:
            raise InvalidTransition("this return is not matched to an order yet")
        order = uow.get(Order, rma.state.order_id)
        if order is None:
            raise NotFound(f"order {rma.state.order_id} is unknown")
        return order

    def new_rma_number(self) -> str:
        return str(RmaNumber.generate())

    # ================================================================ order commands
    def place_order(
        self,
        ctx: Ctx,
        *,
        order_number: str,
        customer_id: str,
        customer_email: str | None,
        channel: Channel,
        lines: Sequence[OrderLine],
        payments: Sequence[Payment],
        shipping: Money,
        store_id: str | None = None,
    ) -> Outcome:
        return self.run(
            ctx,
            self.cmd_place_order(
                ctx,
                order_number=order_number,
                customer_id=customer_id,
                customer_email=customer_email,
                channel=channel,
                lines=lines,
                payments=payments,
                shipping=shipping,
                store_id=store_id,
            ),
        )

    def cmd_place_order(
        self,
        ctx: Ctx,
        *,
        order_number: str,
        customer_id: str,
        customer_email: str | None,
        channel: Channel,
        lines: Sequence[OrderLine],
        payments: Sequence[Payment],
        shipping: Money,
        store_id: str | None = None,
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            if not uow.is_new(Order, order_id_for(order_number)):
                raise AlreadyExists(f"order {order_number} already exists")
            order = Order.place(
                order_number=order_number,
                customer_id=customer_id,
                customer_email=customer_email,
                channel=channel,
                lines=tuple(lines),
                payments=tuple(payments),
                shipping=shipping,
                at=at,
                cause=ctx.cause,
                store_id=store_id,
            )
            uow.add(order)
            return Outcome(aggregate_id=order.id, status="placed")

        return command

    def cmd_fulfil_order(
        self, ctx: Ctx, *, order_number: str, location_id: str, lines: Sequence[FulfilledLine]
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            order = self._order(uow, order_number)
            order.fulfil(location_id, tuple(lines), at, ctx.cause)
            return Outcome(aggregate_id=order.id, status="fulfilled")

        return command

    def fulfil_order(
        self, ctx: Ctx, *, order_number: str, location_id: str, lines: Sequence[FulfilledLine]
    ) -> Outcome:
        return self.run(
            ctx,
            self.cmd_fulfil_order(
                ctx, order_number=order_number, location_id=location_id, lines=lines
            ),
        )

    def cmd_deliver_order(
        self, ctx: Ctx, *, order_number: str, delivered_at: datetime | None = None
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            order = self._order(uow, order_number)
            order.deliver(delivered_at or at, ctx.cause)
            return Outcome(aggregate_id=order.id, status="delivered")

        return command

    def deliver_order(
        self, ctx: Ctx, *, order_number: str, delivered_at: datetime | None = None
    ) -> Outcome:
        return self.run(
            ctx, self.cmd_deliver_order(ctx, order_number=order_number, delivered_at=delivered_at)
        )

    def cmd_cancel_order(
        self, ctx: Ctx, *, order_number: str, reason: str
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            order = self._order(uow, order_number)
            order.cancel(reason, at, ctx.cause)
            return Outcome(aggregate_id=order.id, status="cancelled")

        return command

    def cancel_order(self, ctx: Ctx, *, order_number: str, reason: str) -> Outcome:
        return self.run(ctx, self.cmd_cancel_order(ctx, order_number=order_number, reason=reason))

    # ================================================================ return commands
    def cmd_request_return(
        self,
        ctx: Ctx,
        *,
        order_number: str,
        lines: Sequence[RequestedLine],
        channel: ReturnChannel = ReturnChannel.PORTAL,
        method: ReturnMethod = ReturnMethod.CARRIER_DROP_OFF,
        refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT,
        comment: str = "",
        return_id: UUID | None = None,
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        new_id = return_id or uuid4()

        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            order = self._order(uow, order_number)
            rma = Return.request(
                new_id,
                order=order,
                lines=tuple(lines),
                channel=channel,
                method=method,
                refund_method=refund_method,
                comment=comment,
                at=at,
                cause=ctx.cause,
            )
            order.reserve_return(rma.id, quantities_of(rma.state.lines), at, ctx.cause)
            rma_number = self.new_rma_number()
            rma.decide(
                order=order,
                book=self.policy_book,
                rma_number=rma_number,
                destination_warehouse=self.default_warehouse,
                label_reference=label_for(rma_number),
                at=at,
                cause=ctx.cause,
            )
            if rma.state.status is ReturnStatus.REJECTED:
                order.release_return(rma.id, at, ctx.cause)
            uow.add(rma)
            return outcome_of(rma)

        return command

    def request_return(
        self,
        ctx: Ctx,
        *,
        order_number: str,
        lines: Sequence[RequestedLine],
        channel: ReturnChannel = ReturnChannel.PORTAL,
        method: ReturnMethod = ReturnMethod.CARRIER_DROP_OFF,
        refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT,
        comment: str = "",
    ) -> Outcome:
        return self.run(
            ctx,
            self.cmd_request_return(
                ctx,
                order_number=order_number,
                lines=lines,
                channel=channel,
                method=method,
                refund_method=refund_method,
                comment=comment,
            ),
        )

    def approve_return(self, ctx: Ctx, *, return_id: UUID) -> Outcome:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return(uow, return_id)
            order = self._order_of(uow, rma)
            rma_number = self.new_rma_number()
            rma.approve(
                order=order,
                book=self.policy_book,
                rma_number=rma_number,
                destination_warehouse=self.default_warehouse,
                label_reference=label_for(rma_number),
                at=at,
                cause=ctx.cause,
            )
            return outcome_of(rma)

        return self.run(ctx, command)

    def refuse_return(self, ctx: Ctx, *, return_id: UUID, reason: str) -> Outcome:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return(uow, return_id)
            rma.refuse(reason, at, ctx.cause)
            self._order_of(uow, rma).release_return(rma.id, at, ctx.cause)
            return outcome_of(rma)

        return self.run(ctx, command)

    def issue_label(
        self, ctx: Ctx, *, rma_number: str, carrier: str = "sandbox-carrier"
    ) -> Outcome:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return_by_rma(uow, rma_number)
            reissue = rma.state.label_reference or label_for(rma_number)
            rma.issue_label(f"{reissue}-R{rma.version}", carrier, at, ctx.cause)
            return outcome_of(rma)

        return self.run(ctx, command)

    def cancel_return(self, ctx: Ctx, *, return_id: UUID, reason: str) -> Outcome:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return(uow, return_id)
            rma.cancel(reason, at, ctx.cause)
            self._order_of(uow, rma).release_return(rma.id, at, ctx.cause)
            return outcome_of(rma)

        return self.run(ctx, command)

    def expire_returns(self, ctx: Ctx, *, limit: int = 500) -> list[UUID]:
        """Expire RMAs authorized longer ago than the policy allows and never shipped."""
        now = ctx.at or self.clock()
        shortest = min(
            [self.policy_book.default.expiry_days]
            + [
                int(o["expiry_days"])
                for o in self.policy_book.by_category.values()
                if "expiry_days" in o
            ]
        )
        candidates = self.lookups.authorized_before(now - timedelta(days=shortest), limit)
        expired: list[UUID] = []

        def expire_one(return_id: UUID) -> Callable[[UnitOfWork, datetime], Outcome]:
            def command(uow: UnitOfWork, at: datetime) -> Outcome:
                rma = self._return(uow, return_id)
                if rma.expire(self.policy_book, at, ctx.cause):
                    self._order_of(uow, rma).release_return(rma.id, at, ctx.cause)
                    expired.append(return_id)
                return outcome_of(rma)

            return command

        self.run_batch([(Ctx(ctx.cause, now), expire_one(rid)) for rid in candidates])
        return expired

    def cmd_receive_parcel(
        self,
        ctx: Ctx,
        *,
        receipt_id: str,
        warehouse_id: str,
        rma_number: str | None,
        tracking_number: str | None,
        items: Sequence[ReceivedItem],
        order_number: str | None = None,
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        """A parcel at the warehouse: for its RMA, or a blind return when none is known."""

        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma: Return | None = None
            if rma_number:
                try:
                    rma = self._return_by_rma(uow, rma_number)
                except (NotFound, DomainError):
                    rma = None
            if rma is None:
                existing = uow.get(Return, blind_return_id_for(receipt_id))
                if existing is not None:
                    return outcome_of(existing)
                rma = Return.detect_blind(
                    receipt_id=receipt_id,
                    warehouse_id=warehouse_id,
                    tracking_number=tracking_number,
                    claimed_rma_number=rma_number,
                    order_number_hint=order_number,
                    items=tuple(items),
                    at=at,
                    cause=ctx.cause,
                )
                uow.add(rma)
                return outcome_of(rma)
            rma.receive_parcel(
                receipt_id=receipt_id,
                warehouse_id=warehouse_id,
                tracking_number=tracking_number,
                items=tuple(items),
                at=at,
                cause=ctx.cause,
            )
            if receipt_id not in rma.state.unexpected_receipts:
                return outcome_of(rma)
            # Goods nobody can take in under this RMA still need a home, an inspection and
            # perhaps a refund: the blind-return queue is where customer service does that.
            blind = uow.get(Return, blind_return_id_for(receipt_id))
            if blind is None:
                blind = Return.detect_blind(
                    receipt_id=receipt_id,
                    warehouse_id=warehouse_id,
                    tracking_number=tracking_number,
                    claimed_rma_number=rma.state.rma_number,
                    order_number_hint=rma.state.order_number,
                    items=tuple(items),
                    at=at,
                    cause=ctx.cause,
                )
                uow.add(blind)
            return outcome_of(blind)

        return command

    def receive_parcel(
        self,
        ctx: Ctx,
        *,
        receipt_id: str,
        warehouse_id: str,
        rma_number: str | None,
        tracking_number: str | None,
        items: Sequence[ReceivedItem],
        order_number: str | None = None,
    ) -> Outcome:
        return self.run(
            ctx,
            self.cmd_receive_parcel(
                ctx,
                receipt_id=receipt_id,
                warehouse_id=warehouse_id,
                rma_number=rma_number,
                tracking_number=tracking_number,
                items=items,
                order_number=order_number,
            ),
        )

    def match_blind_return(
        self,
        ctx: Ctx,
        *,
        return_id: UUID,
        order_number: str,
        lines: Sequence[RequestedLine],
        matched_by: str,
    ) -> Outcome:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return(uow, return_id)
            order = self._order(uow, order_number)
            rma.match_blind(
                order=order,
                lines=tuple(lines),
                matched_by=matched_by,
                rma_number=self.new_rma_number(),
                book=self.policy_book,
                at=at,
                cause=ctx.cause,
            )
            order.reserve_return(rma.id, quantities_of(rma.state.lines), at, ctx.cause)
            return outcome_of(rma)

        return self.run(ctx, command)

    def cmd_inspect_items(
        self,
        ctx: Ctx,
        *,
        rma_number: str,
        receipt_id: str | None,
        items: Sequence[InspectedItem],
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return_by_rma(uow, rma_number)
            rma.inspect(
                receipt_id=receipt_id,
                items=tuple(items),
                book=self.policy_book,
                at=at,
                cause=ctx.cause,
            )
            return self._settle_with_customer(uow, rma, at, ctx.cause)

        return command

    def inspect_items(
        self, ctx: Ctx, *, rma_number: str, receipt_id: str | None, items: Sequence[InspectedItem]
    ) -> Outcome:
        return self.run(
            ctx,
            self.cmd_inspect_items(ctx, rma_number=rma_number, receipt_id=receipt_id, items=items),
        )

    def _settle_with_customer(
        self,
        uow: UnitOfWork,
        rma: Return,
        at: datetime,
        cause: Cause,
        *,
        method: RefundMethod | None = None,
    ) -> Outcome:
        """After inspection, pay the customer the way they chose; never wait on repair legs."""
        order = self._order_of(uow, rma)
        method = method or rma.state.refund_method
        zero = Money.zero(rma.state.currency)
        items = rma.items_due_unpaid()
        shipping = rma.shipping_due_unpaid()
        if not shipping.is_zero and order.shipping_refunded():
            shipping = zero  # another return of this order already paid the shipping back
        amount = items + shipping
        if amount.amount <= 0:
            rma.close_if_settled(at, cause)
            return outcome_of(rma)
        if method is RefundMethod.STORE_CREDIT:
            credit_id = f"SC-{rma.state.rma_number}-{rma.version}"
            bonus = items.times(rma.policy(self.policy_book).store_credit_bonus_rate)
            order.allocate_refund(
                refund_id=credit_id,
                return_id=rma.id,
                allocations=(store_credit_allocation(amount),),
                shipping_refunded=shipping,
                at=at,
                cause=cause,
            )
            rma.issue_store_credit(
                credit_id=credit_id,
                amount=amount,
                bonus=bonus,
                shipping=shipping,
                at=at,
                cause=cause,
            )
            return outcome_of(rma, amount=amount)
        if method is RefundMethod.EXCHANGE and rma.state.replacement_order_id is None:
            return self._exchange(uow, rma, order, at, cause)
        return self._refund(rma, order, amount, at, cause, shipping=shipping)

    def _refund(
        self,
        rma: Return,
        order: Order,
        amount: Money,
        at: datetime,
        cause: Cause,
        *,
        shipping: Money | None = None,
        keep_item: bool = False,
    ) -> Outcome:
        refund_id = f"RF-{rma.state.rma_number}-{len(rma.state.refunds) + 1}"
        shipping = shipping or Money.zero(rma.state.currency)
        try:
            allocations = allocate_proportionally(amount, order.refund_capacities())
        except ValueError as error:
            raise InvalidCommand(str(error)) from error
        order.allocate_refund(
            refund_id=refund_id,
            return_id=rma.id,
            allocations=allocations,
            shipping_refunded=shipping,
            at=at,
            cause=cause,
        )
        rma.request_refund(
            refund_id=refund_id,
            amount=amount,
            allocations=allocations,
            shipping=shipping,
            at=at,
            cause=cause,
            keep_item=keep_item,
        )
        return outcome_of(rma, refund_id=refund_id, amount=amount)

    def _exchange(
        self, uow: UnitOfWork, rma: Return, order: Order, at: datetime, cause: Cause
    ) -> Outcome:
        number = f"{order.state.order_number}-X{len(order.state.replacements) + 1}"
        lines = tuple(
            OrderLine(
                line_no=index,
                sku=line.sku,
                quantity=line.quantity,
                unit_price=Money.zero(order.state.currency),
                supplier=line.supplier,
                category=line.category,
                warranty_months=order.line(line.line_no).warranty_months,
                returnable=order.line(line.line_no).returnable,
            )
            for index, line in enumerate(rma.state.lines.values(), start=1)
        )
        replacement = Order.place(
            order_number=number,
            customer_id=order.state.customer_id,
            customer_email=order.state.customer_email,
            channel=order.state.channel,
            lines=lines,
            payments=(),
            shipping=Money.zero(order.state.currency),
            at=at,
            cause=cause,
            store_id=order.state.store_id,
            replacement_for=order.id,
            replacement_return_id=rma.id,
        )
        uow.add(replacement)
        order.record_replacement(replacement.id, rma.id, at, cause)
        rma.order_exchange(
            replacement_order_id=replacement.id,
            replacement_order_number=number,
            lines=lines,
            at=at,
            cause=cause,
        )
        return outcome_of(rma)

    def cmd_settle_refund(
        self, ctx: Ctx, *, refund_id: str, provider_reference: str, amount: Money
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return_of_refund(uow, refund_id)
            rma.settle_refund(refund_id, provider_reference, amount, at, ctx.cause)
            return outcome_of(rma, refund_id=refund_id, amount=amount)

        return command

    def settle_refund(
        self, ctx: Ctx, *, refund_id: str, provider_reference: str, amount: Money
    ) -> Outcome:
        return self.run(
            ctx,
            self.cmd_settle_refund(
                ctx, refund_id=refund_id, provider_reference=provider_reference, amount=amount
            ),
        )

    def cmd_fail_refund(
        self, ctx: Ctx, *, refund_id: str, reason: str
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return_of_refund(uow, refund_id)
            if rma.fail_refund(refund_id, reason, at, ctx.cause):
                self._order_of(uow, rma).release_refund(refund_id, reason, at, ctx.cause)
            return outcome_of(rma, refund_id=refund_id)

        return command

    def fail_refund(self, ctx: Ctx, *, refund_id: str, reason: str) -> Outcome:
        return self.run(ctx, self.cmd_fail_refund(ctx, refund_id=refund_id, reason=reason))

    def retry_refund(self, ctx: Ctx, *, return_id: UUID, as_store_credit: bool = False) -> Outcome:
        """After a failed refund: pay again to the original payments, or as store credit."""

        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return(uow, return_id)
            rma.check_status(ReturnStatus.REFUND_FAILED)
            if rma.state.keep_item_accepted:
                offer = rma.state.keep_item_offer or Money.zero(rma.state.currency)
                remaining = offer - rma.paid_out()
                return self._refund(
                    rma, self._order_of(uow, rma), remaining, at, ctx.cause, keep_item=True
                )
            method = RefundMethod.STORE_CREDIT if as_store_credit else None
            return self._settle_with_customer(uow, rma, at, ctx.cause, method=method)

        return self.run(ctx, command)

    def resend_refund(self, ctx: Ctx, *, return_id: UUID, as_store_credit: bool = False) -> Outcome:
        """While a refund waits for the provider: check there is one to send again.

        Nothing is recorded here. A re-send repeats the same instruction under the same
        refund id, which the provider deduplicates: no money moves and the RMA's state does
        not change, so it is no business fact for the event store (the audit trail of money
        is requested, settled, failed). The attempts and who asked for them are delivery
        bookkeeping, kept by the dispatcher beside the lookups (``oms_refund_dispatches``).
        """

        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return(uow, return_id)
            pending = rma.check_refund_pending()
            if as_store_credit:
                raise InvalidTransition(
                    f"refund {pending[0]} is still with the payment provider: store credit "
                    "only once it failed"
                )
            return outcome_of(rma, refund_id=pending[0], amount=rma.refund(pending[0]).amount)

        return self.run(ctx, command)

    def _return_of_refund(self, uow: UnitOfWork, refund_id: str) -> Return:
        return_id = self.lookups.return_id_for_refund(refund_id)
        if return_id is None:
            for aggregate in uow.aggregates.values():
                if isinstance(aggregate, Return) and refund_id in aggregate.state.refunds:
                    return aggregate
            raise NotFound(f"refund {refund_id} is unknown")
        return self._return(uow, return_id)

    def change_resolution(
        self, ctx: Ctx, *, return_id: UUID, refund_method: RefundMethod, reason: str = ""
    ) -> Outcome:
        """Refund, store credit or exchange instead of what was chosen, until the first
        payment or exchange; inspection then settles the new way."""

        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return(uow, return_id)
            rma.change_resolution(refund_method, reason, at, ctx.cause)
            return outcome_of(rma)

        return self.run(ctx, command)

    def offer_keep_item(self, ctx: Ctx, *, return_id: UUID, valid_days: int = 7) -> Outcome:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return(uow, return_id)
            offer = rma.offer_keep_item(
                self.policy_book, at + timedelta(days=valid_days), at, ctx.cause
            )
            return outcome_of(rma, amount=offer)

        return self.run(ctx, command)

    def accept_keep_item(self, ctx: Ctx, *, return_id: UUID) -> Outcome:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return(uow, return_id)
            order = self._order_of(uow, rma)
            offer = rma.accept_keep_item(at, ctx.cause)
            return self._refund(rma, order, offer, at, ctx.cause, keep_item=True)

        return self.run(ctx, command)

    def cmd_record_in_store_return(
        self,
        ctx: Ctx,
        *,
        store_return_id: str,
        store_id: str,
        staff_id: str,
        order_number: str,
        lines: Sequence[RequestedLine],
        checks: Sequence[CounterCheck],
        refund_method: RefundMethod,
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        """A counter return: recorded, inspected on the spot, and paid back at once."""

        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            existing = uow.get(Return, store_return_id_for(store_id, store_return_id))
            if existing is not None:
                return outcome_of(existing)
            order = self._order(uow, order_number)
            rma = Return.record_in_store(
                store_return_id=store_return_id,
                store_id=store_id,
                staff_id=staff_id,
                order=order,
                lines=tuple(lines),
                refund_method=refund_method,
                rma_number=self.new_rma_number(),
                book=self.policy_book,
                at=at,
                cause=ctx.cause,
            )
            order.reserve_return(rma.id, quantities_of(rma.state.lines), at, ctx.cause)
            uow.add(rma)
            rma.inspect(
                receipt_id=store_return_id,
                items=rma.counter_inspection(tuple(checks), store_id),
                book=self.policy_book,
                at=at,
                cause=ctx.cause,
            )
            return self._settle_with_customer(uow, rma, at, ctx.cause)

        return command

    def record_in_store_return(
        self,
        ctx: Ctx,
        *,
        store_return_id: str,
        store_id: str,
        staff_id: str,
        order_number: str,
        lines: Sequence[RequestedLine],
        checks: Sequence[CounterCheck],
        refund_method: RefundMethod = RefundMethod.ORIGINAL_PAYMENT,
    ) -> Outcome:
        return self.run(
            ctx,
            self.cmd_record_in_store_return(
                ctx,
                store_return_id=store_return_id,
                store_id=store_id,
                staff_id=staff_id,
                order_number=order_number,
                lines=lines,
                checks=checks,
                refund_method=refund_method,
            ),
        )

    def leg_command(
        self, ctx: Ctx, *, return_id: UUID, leg_id: str, action: str, **args: Any
    ) -> Outcome:
        """Advance a repair or return-to-vendor leg: send, complete, restock, ship, credit."""

        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            rma = self._return(uow, return_id)
            actions: dict[str, Callable[[], None]] = {
                "send_to_repair": lambda: rma.send_to_repair(
                    leg_id, str(args["repair_center"]), at, ctx.cause
                ),
                "complete_repair": lambda: rma.complete_repair(
                    leg_id, str(args["outcome"]), at, ctx.cause
                ),
                "restock_repaired": lambda: rma.restock_repaired(
                    leg_id, str(args["location_id"]), at, ctx.cause
                ),
                "ship_to_vendor": lambda: rma.ship_to_vendor(
                    leg_id, str(args["vendor_rma"]), at, ctx.cause
                ),
                "receive_supplier_credit": lambda: rma.receive_supplier_credit(
                    leg_id, cast(Money, args["amount"]), at, ctx.cause
                ),
            }
            if action not in actions:
                raise InvalidCommand(f"unknown leg action {action!r}")
            actions[action]()
            return outcome_of(rma)

        return self.run(ctx, command)

    # ================================================================ inventory commands
    def cmd_count_stock(
        self, ctx: Ctx, *, sku: str, location_id: str, quantity: int, count_id: str
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            inventory = self._inventory(uow, sku, location_id)
            inventory.count(quantity, count_id, at, ctx.cause)
            return Outcome(aggregate_id=inventory.id, status="counted")

        return command

    def cmd_adjust_stock(
        self, ctx: Ctx, *, sku: str, location_id: str, delta: int, reason: str, adjustment_id: str
    ) -> Callable[[UnitOfWork, datetime], Outcome]:
        def command(uow: UnitOfWork, at: datetime) -> Outcome:
            inventory = self._inventory(uow, sku, location_id)
            inventory.adjust(delta, reason, adjustment_id, at, ctx.cause)
            return Outcome(aggregate_id=inventory.id, status="adjusted")

        return command

    def _inventory(self, uow: UnitOfWork, sku: str, location_id: str) -> Inventory:
        found = uow.get(Inventory, inventory_id_for(sku, location_id))
        if found is None:
            found = Inventory.start(sku, location_id)
            uow.add(found)
        return found

    # ================================================================ queries
    def get_order(self, order_number: str) -> Order:
        order = self._load(Order, order_id_for(order_number))
        if not isinstance(order, Order):
            raise NotFound(f"order {order_number} is unknown")
        return order

    def get_return(self, return_id: UUID) -> Return:
        found = self._load(Return, return_id)
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
            order = self._load(Order, row.order_id)
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


# ---------------------------------------------------------------- pure helpers
def label_for(rma_number: str) -> str:
    return f"LBL-{rma_number.removeprefix('RMA-')}"


def store_credit_allocation(amount: Money) -> RefundAllocation:
    return RefundAllocation(payment_id=None, method=PaymentMethod.STORE_CREDIT, amount=amount)


def outcome_of(
    rma: Return, *, refund_id: str | None = None, amount: Money | None = None
) -> Outcome:
    s = rma.state
    message = None
    if s.status is ReturnStatus.REJECTED:
        decision = next((d for d in s.decisions.values() if not d.accepted), None)
        message = f"refused by policy: {s.rejection_code}" if decision is None else None
    return Outcome(
        aggregate_id=rma.id,
        status=s.status.value,
        rma_number=s.rma_number,
        code=s.rejection_code,
        message=message,
        refund_id=refund_id,
        amount=amount,
    )


def lookup_rows_for(aggregates: Sequence[AnyAggregate]) -> LookupRows:
    rows = LookupRows()
    for aggregate in aggregates:
        if isinstance(aggregate, Order):
            s = aggregate.state
            if aggregate.version == len(aggregate.pending_events):
                rows.orders.append(
                    OrderRow(
                        aggregate.id, s.order_number, s.customer_id, s.customer_email, s.placed_at
                    )
                )
            for event in aggregate.pending_events:
                if isinstance(event, OrderPlaced | OrderLinesFulfilled):
                    rows.serials.extend(
                        SerialRow(serial, aggregate.id, line.line_no)
                        for line in event.lines
                        for serial in line.serials
                    )
        elif isinstance(aggregate, Return):
            s2 = aggregate.state
            rows.returns.append(
                ReturnRow(
                    return_id=aggregate.id,
                    rma_number=s2.rma_number,
                    order_id=s2.order_id,
                    customer_id=s2.customer_id,
                    status=s2.status.value,
                    blind=s2.channel is ReturnChannel.BLIND,
                    authorized_at=s2.authorized_at,
                    updated_at=aggregate.modified_on,
                )
            )
            rows.rma_numbers.extend(
                RmaNumberRow(event.rma_number, aggregate.id)
                for event in aggregate.pending_events
                if isinstance(event, ReturnAuthorized | BlindReturnMatched | InStoreReturnRecorded)
            )
            rows.refunds.extend(refund_rows(aggregate))
    return rows


def refund_rows(rma: Return) -> list[RefundRow]:
    """One row per refund the commit touched, in its latest status (a row must not be
    upserted twice in one statement), with the request's time and amount kept."""
    rows: dict[str, RefundRow] = {}
    for event in rma.pending_events:
        if isinstance(event, RefundRequested):
            rows[event.refund_id] = RefundRow(
                event.refund_id,
                rma.id,
                "requested",
                event.timestamp,
                event.amount.amount,
                event.amount.currency,
            )
        elif isinstance(event, RefundSettled | RefundFailed):
            prior = rows.get(event.refund_id) or RefundRow(event.refund_id, rma.id)
            status = "settled" if isinstance(event, RefundSettled) else "failed"
            rows[event.refund_id] = RefundRow(
                prior.refund_id,
                prior.return_id,
                status,
                prior.requested_at,
                prior.amount,
                prior.currency,
            )
    return list(rows.values())
