"""The runner: every command in a unit of work, exactly once per idempotency key.

A command is data (domain/commands.py); its handler (domain/handlers/) loads, decides and
returns an outcome. The runner gives each one a ``UnitOfWork``: its events, the lookup
rows derived from them, its idempotency key and (for callers that own stable positions)
the consumed ``Tracking`` positions commit in one transaction. Conflicts (another writer
got the aggregate version or the RMA number first) retry the whole unit on fresh state,
so guards are always checked against the truth. Queries live in domain/queries.py.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, ProcessRecorder, Tracking
from eventsourcing.utils import get_topic

from domain.aggregate import Aggregate
from domain.commands import (
    CloseUnidentifiedBlindReturn,
    Command,
    ExpireReturn,
    LapseKeepItemOffer,
)
from domain.commands import Outcome as Outcome
from domain.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    DomainError,
    IdempotencyKeyReused,
    InvalidCommand,
    VersionMismatch,
)
from domain.events import (
    BlindReturnMatched,
    Cause,
    DomainEvent,
    InStoreReturnRecorded,
    OrderLinesFulfilled,
    OrderPlaced,
    RefundFailed,
    RefundRequested,
    RefundSettled,
    ReturnAuthorized,
    StoreCreditCredited,
)
from domain.handlers import HANDLERS, Scope
from domain.inventory import Inventory
from domain.lookups import (
    Deadline,
    DeadlineRow,
    LookupRows,
    Lookups,
    OrderRow,
    OrderSkuRow,
    RefundRow,
    ReturnRow,
    RmaNumberRow,
    SerialRow,
    StoreCreditCodeRow,
)
from domain.order import Order
from domain.policy import PolicyBook
from domain.queries import ReturnsQueries
from domain.returns import Return, ReturnStatus
from domain.serialization import OrjsonTranscoder, PydanticMapper
from domain.store_credit import StoreCreditAccount
from domain.unit_of_work import UnitOfWork
from domain.values import ReturnChannel, RmaNumber

log = logging.getLogger(__name__)

AnyAggregate = Aggregate[Any]
MAX_ATTEMPTS = 8
AGGREGATE_CLASSES: dict[str, type[AnyAggregate]] = {
    "order": Order,
    "return": Return,
    "inventory": Inventory,
    "store_credit": StoreCreditAccount,
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


class ReturnsService(ReturnsQueries, Application[UUID]):
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
        policy_source: Callable[[], PolicyBook] | None = None,
    ) -> None:
        super().__init__(env)
        fixed = policy_book or PolicyBook()
        # The operators' policy file, when configured, is asked on every use so an edit
        # takes effect without a restart (adapters/driven/policy_file.py).
        self.policy_source: Callable[[], PolicyBook] = policy_source or (lambda: fixed)
        self.default_warehouse = default_warehouse
        self.clock = clock or (lambda: datetime.now(UTC))

    @property
    def policy_book(self) -> PolicyBook:
        """The policy in force now; a command reads it once, into its Scope."""
        return self.policy_source()

    @policy_book.setter
    def policy_book(self, book: PolicyBook) -> None:
        self.policy_source = lambda: book

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
    def run(self, ctx: Ctx, command: Command) -> Outcome:
        """Run one command in its own transaction, exactly once per idempotency key.

        Without a prefetch: a lone command reads what it needs as it goes, and a new
        aggregate is assumed new until the commit says otherwise (``UnitOfWork.is_new``).
        """
        result = self.run_batch([(ctx, command)], prefetch=False)[0]
        if isinstance(result, DomainError):
            raise result
        return result

    def run_batch(
        self,
        commands: Sequence[tuple[Ctx, Command]],
        trackings: Sequence[Tracking] = (),
        *,
        prefetch: bool = True,
    ) -> list[Outcome | DomainError]:
        """Run many commands in one transaction; refused ones are returned, not raised.

        With ``prefetch`` the aggregates the commands name in ``reads()`` are loaded in one
        round trip instead of one query each; idempotency keys are checked in one query too.
        """
        reads = [r for _, c in commands if (r := c.reads()) is not None] if prefetch else []
        for attempt in range(MAX_ATTEMPTS):
            if trackings and self._already_tracked(trackings):
                # The whole batch was committed before (a redelivery): nothing to do.
                return [self._replayed(ctx) for ctx, _ in commands]
            uow = UnitOfWork(self.load)
            uow.trackings = list(trackings)
            uow.optimistic = attempt == 0
            keys = [ctx.idempotency_key for ctx, _ in commands if ctx.idempotency_key]
            if len(keys) > 1:
                uow.prior_results = self.lookups.command_results(keys)
            elif uow.optimistic:
                # A lone command claims its key at commit; a key used before surfaces as
                # a conflict there, and the rerun returns the first result.
                uow.prior_results = {}
            if reads:
                uow.preload(self._load_many(reads))
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

    def _run_in(self, uow: UnitOfWork, ctx: Ctx, command: Command) -> Outcome | DomainError:
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
                handler = HANDLERS.get(type(command))
                if handler is None:
                    raise InvalidCommand(f"no handler for {type(command).__name__}")
                scope = Scope(
                    uow,
                    ctx.cause,
                    ctx.at or self.clock(),
                    self.policy_book,
                    self.default_warehouse,
                    self.lookups,
                    self.new_rma_number,
                )
                outcome = handler(command, scope)
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

    def stored_events(self, aggregate_id: UUID) -> list[DomainEvent]:
        return cast(list[DomainEvent], list(self.events.get(aggregate_id)))

    def load(self, cls: type[AnyAggregate], aggregate_id: UUID) -> AnyAggregate | None:
        events = self.stored_events(aggregate_id)
        if not events:
            return None
        # The stored kind decides the class: a caller asking for the base class (a version
        # check) or for the wrong kind gets the real aggregate, which ``get`` then type-checks.
        return AGGREGATE_CLASSES[events[0].aggregate_kind].replay(aggregate_id, events)

    def new_rma_number(self) -> str:
        return str(RmaNumber.generate())

    def expire_returns(self, ctx: Ctx, *, limit: int = 500) -> list[UUID]:
        """Expire RMAs authorized longer ago than the policy allows and never shipped; the
        ids of those that expired (at most ``limit``: a sweep calls again for more)."""
        now = ctx.at or self.clock()
        due = self.due_to_expire(now, limit)
        outcomes = self.run_batch([(Ctx(ctx.cause, now), ExpireReturn(d.return_id)) for d in due])
        return [
            d.return_id
            for d, outcome in zip(due, outcomes, strict=True)
            if isinstance(outcome, Outcome) and outcome.status == ReturnStatus.EXPIRED.value
        ]

    # ================================================================ deadlines
    def due_to_expire(self, now: datetime, limit: int) -> list[Due]:
        """RMAs whose time to ship ran out by ``now`` with no parcel, oldest first, at most
        ``limit``; nothing is written (``rma expire --dry-run`` lists these).

        The lookup can only filter by the shortest period of any policy; an RMA under a
        longer one that is not due yet is skipped page by page, so a crowd of those never
        holds back the ones that are due.
        """
        cutoff = now - timedelta(days=self._shortest_expiry_days())
        found: list[Due] = []
        after: Deadline | None = None
        for _ in range(MAX_DEADLINE_PAGES):
            page = self.lookups.awaiting_parcel_since(cutoff, limit, after)
            loaded = self._load_many([d.return_id for d in page])
            for candidate in page:
                rma = loaded.get(candidate.return_id)
                if not isinstance(rma, Return):
                    continue
                due_at = rma.expires_at(self.policy_book)
                if due_at is not None and due_at <= now:
                    found.append(Due(rma.id, rma.state.rma_number, candidate.since, due_at))
                    if len(found) == limit:
                        return found
            if len(page) < limit:
                break
            after = page[-1]
        return found

    def due_to_lapse(self, now: datetime, limit: int) -> list[Due]:
        """Keep-the-item offers that ran out unaccepted by ``now``, earliest first; nothing
        is written."""
        page = self.lookups.offers_expired_by(now, limit)
        loaded = self._load_many([d.return_id for d in page])
        found = []
        for candidate in page:
            rma = loaded.get(candidate.return_id)
            if (
                isinstance(rma, Return)
                and rma.state.status is ReturnStatus.KEEP_ITEM_OFFERED
                and not rma.state.keep_item_accepted
            ):
                found.append(Due(rma.id, rma.state.rma_number, candidate.since, candidate.since))
        return found

    def lapse_offers(self, ctx: Ctx, *, limit: int = 500) -> list[UUID]:
        """Let keep-the-item offers that ran out unaccepted lapse; the ids of those RMAs (at
        most ``limit``: a sweep calls again for more)."""
        now = ctx.at or self.clock()
        due = self.due_to_lapse(now, limit)
        outcomes = self.run_batch(
            [(Ctx(ctx.cause, now), LapseKeepItemOffer(d.return_id)) for d in due]
        )
        return [
            d.return_id
            for d, outcome in zip(due, outcomes, strict=True)
            if isinstance(outcome, Outcome) and outcome.status == ReturnStatus.AUTHORIZED.value
        ]

    def _shortest_expiry_days(self) -> int:
        book = self.policy_book
        overrides = [*book.by_category.values(), *book.by_channel.values()]
        return min(
            [book.default.expiry_days]
            + [int(o["expiry_days"]) for o in overrides if "expiry_days" in o]
        )

    # ------------------------------------------------------------ blind returns (issue 11)
    def close_unidentified_blind_returns(
        self, ctx: Ctx, *, limit: int = 500, dry_run: bool = False
    ) -> list[UUID]:
        """Close as unidentified the blind returns nobody placed within the policy's
        ``blind_unidentified_days``; the ids of those closed (``dry_run``: that would close,
        nothing recorded).

        Looks at the ``limit`` open blind returns changed longest ago: one inspected late
        is found that much later, and the next run takes what this one left.
        """
        now = ctx.at or self.clock()
        candidates = self.lookups.open_blind_returns(limit, 0)
        if dry_run:
            loaded = self._load_many(candidates)  # one round trip, not one per parcel
            due = []
            for rid in candidates:
                rma = loaded.get(rid)
                # Decided on a copy that is never saved.
                if isinstance(rma, Return) and rma.close_unidentified(
                    self.policy_book, now, ctx.cause
                ):
                    due.append(rid)
            return due
        outcomes = self.run_batch(
            [(Ctx(ctx.cause, now), CloseUnidentifiedBlindReturn(rid)) for rid in candidates]
        )
        return [
            rid
            for rid, outcome in zip(candidates, outcomes, strict=True)
            if isinstance(outcome, Outcome) and outcome.status == ReturnStatus.CLOSED.value
        ]


@dataclass(frozen=True)
class Due:
    """An RMA a sweep would change: ``since`` its clock started (authorization or an offer's
    lapse; for an offer, when it ran out), ``due_at`` when the deadline passed."""

    return_id: UUID
    rma_number: str | None
    since: datetime
    due_at: datetime


# Pages of candidates one expiry call may read past before it returns what it found.
MAX_DEADLINE_PAGES = 20


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
                if isinstance(event, OrderPlaced):
                    rows.order_skus.extend(
                        OrderSkuRow(sku, aggregate.id, s.placed_at)
                        for sku in sorted({line.sku for line in event.lines})
                    )
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
                    created_at=aggregate.created_on,
                )
            )
            rows.rma_numbers.extend(
                RmaNumberRow(event.rma_number, aggregate.id)
                for event in aggregate.pending_events
                if isinstance(event, ReturnAuthorized | BlindReturnMatched | InStoreReturnRecorded)
            )
            rows.refunds.extend(refund_rows(aggregate))
            rows.deadlines.append(deadline_row(aggregate))
        elif isinstance(aggregate, StoreCreditAccount):
            rows.store_credit_codes.extend(
                StoreCreditCodeRow(event.code, event.customer_id)
                for event in aggregate.pending_events
                if isinstance(event, StoreCreditCredited) and event.code is not None
            )
    return rows


def deadline_row(rma: Return) -> DeadlineRow:
    offered = (
        rma.state.status is ReturnStatus.KEEP_ITEM_OFFERED and not rma.state.keep_item_accepted
    )
    return DeadlineRow(
        rma.id,
        ship_clock_from=rma.ship_clock_started_at(),
        offer_expires_at=rma.state.keep_item_expires_at if offered else None,
    )


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
