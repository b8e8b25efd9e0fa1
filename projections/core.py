"""The read-model framework: events in, row changes out, no I/O.

A projection is a pure reducer over one aggregate's events at a time: it gets its private
state for that aggregate (a JSON-able dict, ``None`` at first) and one event, and returns
the new state and a list of changes. The store (adapters/driven/readmodels/) loads the states,
runs the reducer, merges the changes of a batch and writes them in one transaction.

Why these change types: a batch from several partitions arrives in no global order, and a
redelivered or republished event must change nothing. ``Increment`` is commutative, so
the order across aggregates never matters; ``Upsert`` is used only for rows that a single
aggregate owns (its events arrive in version order); ``Append`` rows carry an id derived
from the event id, so a second insert is a no-op; ``Rebase`` asks the store to recompute
a row from its stored history where only the event store's order can decide (stock counts).
Redelivery is caught before any of that: the state keeps the last applied version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Protocol, TypeVar, cast

import orjson

from domain.currencies import MINOR_UNITS
from domain.values import largest_remainder
from projections.schema import Table, state_table

State = dict[str, Any]
KeyTuple = tuple[tuple[str, Any], ...]
CENT = Decimal("0.01")

# Aggregate kinds, as the relay names them in the CloudEvent ``source`` (oms/<kind>).
ORDER = "order"
RETURN = "return"
INVENTORY = "inventory"
STORE_CREDIT = "store_credit"
_KIND_BY_PREFIX = {
    "order.": ORDER,
    "rma.": RETURN,
    "inventory.": INVENTORY,
    "store_credit.": STORE_CREDIT,
}


# ---------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class Event:
    """One relayed domain event, as the projections see it."""

    id: str
    type: str
    aggregate_id: str
    version: int
    position: int
    time: datetime
    data: Mapping[str, Any]
    kind: str = ""
    topic: str | None = None
    """Where it was consumed from, when known: lets the store track, per partition,
    the event-store position applied (the relay's low watermark after a broker loss)."""
    partition: int | None = None

    @classmethod
    def from_cloud_event(
        cls, message: Mapping[str, Any], *, topic: str | None = None, partition: int | None = None
    ) -> Event:
        """From the relay's CloudEvent (adapters/driven/relay.py: ``cloud_event_for``)."""
        try:
            data = message["data"]
            type_name = str(message["type"])
            source = str(message.get("source") or "")
            kind = source.removeprefix("oms/") if source.startswith("oms/") else kind_of(type_name)
            return cls(
                id=str(message["id"]),
                type=type_name,
                aggregate_id=str(data["aggregate_id"]),
                version=int(data["version"]),
                position=int(data["position"]),
                time=parse_time(message.get("time") or data["timestamp"]),
                data=data,
                kind=kind,
                topic=topic,
                partition=partition,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a relayed domain event: {error!r}") from error


def kind_of(type_name: str) -> str:
    for prefix, kind in _KIND_BY_PREFIX.items():
        if type_name.startswith(prefix):
            return kind
    return "unknown"


def parse_time(value: str | datetime) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return moment


def day_of(moment: datetime) -> date:
    """Ledger days are UTC days, whatever the time zone of the event."""
    return moment.astimezone(UTC).date()


def money(value: Mapping[str, Any] | None) -> Decimal:
    """The amount of a wire Money (``{"amount": "19.90", "currency": "EUR"}``)."""
    if not value:
        return Decimal("0.00")
    amount = Decimal(str(value["amount"]))
    exponent = MINOR_UNITS.get(str(value.get("currency", "")))
    # The domain refuses amounts finer than their currency, so this only gives a stored
    # amount its currency's scale (19.9 -> 19.90 EUR, 29800.00 -> 29800 JPY); it never
    # cuts 12.345 KWD to cents. A code outside the table keeps the scale it came with.
    return amount if exponent is None else amount.quantize(Decimal(1).scaleb(-exponent))


def split_pro_rata(
    total: Decimal, weights: Sequence[Decimal], currency: str | None = None
) -> list[Decimal]:
    """``total`` split over ``weights`` to the cent (to the currency's minor unit when
    given: yen, fils), parts adding up exactly (largest remainder); equal parts when every
    weight is zero."""
    if not weights:
        return []
    step = CENT
    if currency is not None and currency in MINOR_UNITS:
        step = Decimal(1).scaleb(-MINOR_UNITS[currency])
    cents = int((total / step).to_integral_value())
    sign = -1 if cents < 0 else 1
    basis = [max(w, Decimal(0)) for w in weights]
    if not any(basis):
        basis = [Decimal(1)] * len(weights)
    floors = largest_remainder(abs(cents), basis)
    return [Decimal(sign * f) * step for f in floors]


# ---------------------------------------------------------------- changes
@dataclass(frozen=True, slots=True)
class Increment:
    """Add ``deltas`` to the row at ``key`` (created at zero): commutative, so batchable."""

    table: str
    key: Mapping[str, Any]
    deltas: Mapping[str, int | Decimal]


@dataclass(frozen=True, slots=True)
class Upsert:
    """Set ``values`` of the row at ``key``; only for rows one aggregate owns."""

    table: str
    key: Mapping[str, Any]
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Append:
    """Insert a row once: ``id`` derives from the event id, so a replay inserts nothing."""

    table: str
    id: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Rebase:
    """Recompute the row at ``key`` from its history after the batch's writes, if
    ``position`` is at or before the position its base was taken at (projection-specific
    SQL: ``Projection.rebase_sql[table]``)."""

    table: str
    key: Mapping[str, Any]
    position: int


Change = Increment | Upsert | Append | Rebase


def key_of(key: Mapping[str, Any]) -> KeyTuple:
    if len(key) == 1:
        return tuple(key.items())  # nothing to sort: most keys are one id
    return tuple(sorted(key.items()))


@dataclass
class Merged:
    """A batch's changes, one entry per row: what the store writes."""

    appends: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    upserts: dict[str, dict[KeyTuple, dict[str, Any]]] = field(default_factory=dict)
    increments: dict[str, dict[KeyTuple, dict[str, Any]]] = field(default_factory=dict)
    rebases: dict[str, dict[KeyTuple, int]] = field(default_factory=dict)

    def __len__(self) -> int:
        groups: list[Mapping[Any, Any]] = [
            *self.appends.values(),
            *self.upserts.values(),
            *self.increments.values(),
            *self.rebases.values(),
        ]
        return sum(len(g) for g in groups)

    def add(self, changes: Iterable[Change]) -> None:
        """Fold more changes in; a rebuild folds a whole replay into one ``Merged``."""
        # Dispatch on the exact class: a ``match`` over class patterns costs an isinstance
        # chain per change, and a batch has tens of thousands of them.
        appends, upserts, increments = self.appends, self.upserts, self.increments
        for change in changes:
            kind = type(change)
            if kind is Increment:
                inc = cast(Increment, change)
                table = increments.get(inc.table)
                if table is None:
                    table = increments[inc.table] = {}
                k = key_of(inc.key)
                row = table.get(k)
                if row is None:
                    row = table[k] = dict(inc.key)
                for column, delta in inc.deltas.items():
                    row[column] = row.get(column, 0) + delta
            elif kind is Append:
                app = cast(Append, change)
                rows = appends.get(app.table)
                if rows is None:
                    rows = appends[app.table] = {}
                if app.id not in rows:
                    rows[app.id] = {"id": app.id, **app.values}
            elif kind is Upsert:
                up = cast(Upsert, change)
                table = upserts.get(up.table)
                if table is None:
                    table = upserts[up.table] = {}
                k = key_of(up.key)
                row = table.get(k)
                if row is None:
                    row = table[k] = dict(up.key)
                row.update(up.values)
            elif kind is Rebase:
                rebase = cast(Rebase, change)
                positions = self.rebases.setdefault(rebase.table, {})
                k = key_of(rebase.key)
                positions[k] = min(positions.get(k, rebase.position), rebase.position)
            else:
                raise TypeError(f"not a change: {change!r}")

    def check(self) -> None:
        """A column moved both ways in one batch would depend on the order of the two writes."""
        for table, upserted in self.upserts.items():
            incremented = self.increments.get(table)
            if not incremented:
                continue
            for k, values in upserted.items():
                inc = incremented.get(k)
                if inc is not None:
                    both = (set(values) & set(inc)) - {name for name, _ in k}
                    if both:
                        raise ValueError(
                            f"{table}: columns {sorted(both)} both set and incremented"
                        )


def merge(changes: Iterable[Change]) -> Merged:
    """Fold a batch's changes so each row is written once: increments of one key summed,
    upserts of one key combined (the later value wins), appends deduplicated by id,
    rebases reduced to the earliest position."""
    merged = Merged()
    merged.add(changes)
    merged.check()
    return merged


# ---------------------------------------------------------------- projections
class Projection(Protocol):
    """What the store needs of a read model."""

    @property
    def name(self) -> str: ...

    @property
    def kinds(self) -> tuple[str, ...]:
        """Aggregate kinds whose events it reads (the store maps them to relayed topics)."""
        ...

    @property
    def tables(self) -> tuple[Table, ...]:
        """Its read-model tables (the state table is added by ``all_tables``)."""
        ...

    @property
    def outbound_topic(self) -> str | None: ...

    @property
    def rebase_sql(self) -> Mapping[str, str]: ...

    def message_key(self, table: str, row: Mapping[str, Any]) -> str | None:
        """The Kafka key to publish a changed row under; ``None``: not published."""
        ...

    def reduce(self, state: State | None, event: Event) -> tuple[State | None, list[Change]]: ...


def all_tables(projection: Projection) -> tuple[Table, ...]:
    return (*projection.tables, state_table(projection.name))


def ddl(projection: Projection, suffix: str = "") -> list[str]:
    return [statement for table in all_tables(projection) for statement in table.ddl(suffix)]


Handler = Callable[[Any, State, Event, list[Change]], None]
H = TypeVar("H", bound=Handler)


def on(*event_types: str) -> Callable[[H], H]:
    """Marks a reducer method as the handler of these event types."""

    def mark(method: H) -> H:
        method.__dict__.setdefault("_handles", set()).update(event_types)
        return method

    return mark


class Reducer:
    """Base of the read models: dedupes by version, copies the state, dispatches by type.

    A handler mutates the copy it is given and appends its changes; the caller's state is
    never touched, so ``reduce`` stays a pure function of (state, event).
    """

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ()
    outbound_topic: ClassVar[str | None] = None
    rebase_sql: ClassVar[Mapping[str, str]] = {}
    _handlers: ClassVar[dict[str, Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, Handler] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                for event_type in getattr(attribute, "_handles", ()):
                    handlers[event_type] = attribute
        cls._handlers = handlers

    @property
    def tables(self) -> tuple[Table, ...]:
        raise NotImplementedError

    def reduce(self, state: State | None, event: Event) -> tuple[State | None, list[Change]]:
        if state is not None and event.version <= int(state.get("version", 0)):
            return state, []  # redelivered or republished: applied already
        # A JSON round trip is a deep copy (a few microseconds) that also proves the state
        # stays storable as jsonb.
        new: State = orjson.loads(orjson.dumps(state)) if state else {}
        changes: list[Change] = []
        self.fold(new, event, changes)
        return new, changes

    def fold(self, state: State, event: Event, out: list[Change]) -> None:
        """``reduce`` without the version check and the copy: ``state`` changes in place.

        For callers that own their states and fold many events into them (``reduce_all``):
        a batch copies nothing per event. ``reduce`` stays the pure definition.
        """
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(self, state, event, out)
        state["version"] = event.version

    def message_key(self, table: str, row: Mapping[str, Any]) -> str | None:
        return None


def reduce_all(
    projection: Projection, states: dict[str, State], events: Iterable[Event]
) -> list[Change]:
    """Fold ``events`` into ``states`` (which the caller owns and gives up: they change in
    place) and return the changes: the same states and changes as ``reduce`` event by
    event, without copying a state per event. Projections without ``fold`` take ``reduce``.
    """
    changes: list[Change] = []
    fold: Callable[[State, Event, list[Change]], None] | None = getattr(projection, "fold", None)
    if fold is None:
        reduce = projection.reduce
        for event in events:
            new, produced = reduce(states.get(event.aggregate_id), event)
            if new is not None:
                states[event.aggregate_id] = new
            changes.extend(produced)
        return changes
    for event in events:
        state = states.get(event.aggregate_id)
        if state is None:
            state = states[event.aggregate_id] = {}
        elif event.version <= int(state.get("version", 0)):
            continue  # redelivered or republished: applied already
        fold(state, event, changes)
    return changes


# Bearer secrets no read model copies: a store-credit code spends the credit, and the
# timelines are read by every staff role and by analytics. The customer learns the code
# from the notification; customer service reads it from the account itself.
SECRET_FIELDS: Mapping[str, frozenset[str]] = {
    "rma.store_credit_issued": frozenset({"code"}),
    "store_credit.credited": frozenset({"code"}),
}


def summary_of(
    data: Mapping[str, Any], fields: Iterable[str], event_type: str = ""
) -> dict[str, Any]:
    """A few telling fields of an event for a timeline row (amounts stay wire Money)."""
    secret = SECRET_FIELDS.get(event_type, frozenset())
    summary = {}
    for name in fields:
        if name in secret:
            continue
        value = data.get(name)
        if value is not None:
            summary[name] = value
    return summary


# ---------------------------------------------------------------- in memory
class InMemoryReadModel:
    """The store's semantics on dicts: the reference the unit tests hold reducers to.

    Rebases are delegated to the projection's ``rebase_in_memory`` (the Python twin of its
    SQL); generated columns are not computed.
    """

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.states: dict[str, State] = {}
        self.tables: dict[str, dict[KeyTuple, dict[str, Any]]] = {
            t.name: {} for t in projection.tables
        }

    def apply(self, events: Iterable[Event]) -> Merged:
        changes: list[Change] = []
        for event in events:
            new, produced = self.projection.reduce(self.states.get(event.aggregate_id), event)
            if new is not None:
                self.states[event.aggregate_id] = new
            changes.extend(produced)
        merged = merge(changes)
        for table, appended in merged.appends.items():
            rows = self.tables[table]
            for row in appended.values():
                rows.setdefault(key_of({"id": row["id"]}), dict(row))
        for table, upserted in merged.upserts.items():
            for k, values in upserted.items():
                self.tables[table].setdefault(k, {}).update(values)
        for table, incremented in merged.increments.items():
            for k, deltas in incremented.items():
                row = self.tables[table].setdefault(k, dict(k))
                for column, delta in deltas.items():
                    if column not in dict(k):
                        row[column] = row.get(column, 0) + delta
        rebase = getattr(self.projection, "rebase_in_memory", None)
        for table, rebased in merged.rebases.items():
            if rebase is None:
                raise TypeError(f"{self.projection.name} has no rebase_in_memory for {table}")
            for k, position in rebased.items():
                rebase(self.tables, table, dict(k), position)
        return merged

    def rows(self, table: str) -> list[dict[str, Any]]:
        return [self.tables[table][k] for k in sorted(self.tables[table])]
