"""The read models' tables, described once: the DDL and the store's typed writes both come
from these descriptions, so a column's SQL type is written down in exactly one place.

Every table can be created under a suffix (``rm_refunds_rebuild``): a rebuild replays the
event store into fresh tables and renames them over the live ones, so index and key names
carry the suffix too and are renamed with their table.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

# Unconstrained: each amount keeps its currency's scale (19.90 EUR, 12.345 KWD, 29800 JPY);
# numeric(18,2) cut fils to cents.
MONEY = "numeric"
COUNT = "bigint"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    not_null: bool = False
    default: str | None = None
    generated: str | None = None
    """A ``GENERATED ALWAYS AS (...) STORED`` expression: derived in SQL, never written."""

    @property
    def array_type(self) -> str:
        """The element type for an ``unnest(%s::<type>[])`` cast (no typmod needed there)."""
        return self.type.split("(", 1)[0]

    def ddl(self) -> str:
        parts = [f'"{self.name}" {self.type}']
        if self.generated is not None:
            parts.append(f"GENERATED ALWAYS AS ({self.generated}) STORED")
        else:
            if self.not_null:
                parts.append("NOT NULL")
            if self.default is not None:
                parts.append(f"DEFAULT {self.default}")
        return " ".join(parts)


def counter(name: str) -> Column:
    """A column moved only by increments: starts at zero, never NULL."""
    return Column(name, COUNT, not_null=True, default="0")


def amount(name: str) -> Column:
    """A money column moved only by increments (its currency is a key column)."""
    return Column(name, MONEY, not_null=True, default="0")


def text(name: str, not_null: bool = False) -> Column:
    return Column(name, "text", not_null=not_null)


@dataclass(frozen=True, slots=True)
class Index:
    suffix: str
    columns: str
    using: str | None = None
    """An index method other than the default btree (``gin`` for a jsonb containment)."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    indexes: tuple[Index, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        missing = [k for k in self.key if k not in names]
        if missing or len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: bad key {missing} or repeated columns")

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"table {self.name} has no column {name!r}")

    def physical(self, suffix: str = "") -> str:
        return f"{self.name}{suffix}"

    def index_names(self, suffix: str = "") -> list[tuple[str, str]]:
        """(name under ``suffix``, live name) of the primary key and every index."""
        names = [(f"{self.name}{suffix}_pkey", f"{self.name}_pkey")]
        for index in self.indexes:
            names.append((f"{self.name}{suffix}_{index.suffix}", f"{self.name}_{index.suffix}"))
        return names

    def ddl(self, suffix: str = "") -> list[str]:
        name = self.physical(suffix)
        columns = ",\n    ".join(c.ddl() for c in self.columns)
        key = ", ".join(f'"{k}"' for k in self.key)
        statements = [
            f'CREATE TABLE IF NOT EXISTS "{name}" (\n    {columns},\n'
            f'    CONSTRAINT "{name}_pkey" PRIMARY KEY ({key}))'
        ]
        statements += [
            f'CREATE INDEX IF NOT EXISTS "{name}_{i.suffix}" ON "{name}"'
            f"{f' USING {i.using}' if i.using else ''} ({i.columns})"
            for i in self.indexes
        ]
        return statements


def state_table(projection_name: str) -> Table:
    """Each projection's private per-aggregate state, with the last applied version."""
    return Table(
        f"rm_{projection_name}_state",
        (
            text("aggregate_id", not_null=True),
            Column("version", COUNT, not_null=True),
            Column("state", "jsonb", not_null=True),
        ),
        key=("aggregate_id",),
    )


# ---------------------------------------------------------------- framework
OFFSETS_DDL = [
    # Consumed Kafka offsets per projection and partition, committed with the rows they
    # produced; ``position`` is the highest event-store position applied from that partition.
    """CREATE TABLE IF NOT EXISTS rm_offsets (
        projection text NOT NULL,
        topic text NOT NULL,
        partition integer NOT NULL,
        next_offset bigint NOT NULL,
        position bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (projection, topic, partition))""",
    # The relay's table (adapters/driven/relay.py), created here too so a read-model worker can
    # start before the relay ever ran.
    """CREATE TABLE IF NOT EXISTS oms_consumer_positions (
        consumer text PRIMARY KEY,
        notification_id bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())""",
    # Stored events a projection could not apply (a value PostgreSQL refuses, a reducer
    # that raised): skipped alone so the rest of their batch commits, and kept in sight
    # here. Events are immutable: a fix is a new event, or a reducer fixed and a rebuild.
    """CREATE TABLE IF NOT EXISTS rm_failed_events (
        projection text NOT NULL,
        event_id text NOT NULL,
        aggregate_id text NOT NULL,
        version bigint NOT NULL,
        position bigint NOT NULL,
        event_type text NOT NULL,
        reason text NOT NULL,
        failed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (projection, event_id))""",
]


# ---------------------------------------------------------------- stock levels
class Bucket(StrEnum):
    """Where stock of a SKU at a location sits: one counter column of rm_stock_levels each."""

    AVAILABLE = "available"
    QUARANTINED = "quarantined"
    IN_REPAIR = "in_repair"
    RETURNED_TO_VENDOR = "returned_to_vendor"
    SCRAPPED = "scrapped"
    EXPECTED_RETURNS = "expected_returns"
    # Promised to an exchange's replacement order until it ships or is cancelled: still
    # counted in ``available`` (it is on the shelf), not to be sold again.
    RESERVED = "reserved"


# Plain strings (not the enum members): they name columns and JSON keys.
BUCKETS: tuple[str, ...] = tuple(bucket.value for bucket in Bucket)

STOCK_LEVELS = Table(
    "rm_stock_levels",
    (
        text("sku", not_null=True),
        text("location_id", not_null=True),
        *(counter(bucket) for bucket in BUCKETS),
        # The latest count taken (absolute), when it was taken and its event-store position
        # (breaks ties): ``available`` = counted + every later available movement (stock.py).
        Column("counted", COUNT),
        Column("counted_position", COUNT),
        Column("counted_at", "timestamptz"),
        # What can still be sold: on the shelf and not promised to a replacement.
        Column(
            "available_to_promise",
            COUNT,
            generated=f'"{Bucket.AVAILABLE}" - "{Bucket.RESERVED}"',
        ),
    ),
    key=("sku", "location_id"),
)

STOCK_MOVEMENTS = Table(
    "rm_stock_movements",
    (
        text("id", not_null=True),
        text("sku", not_null=True),
        text("location_id", not_null=True),
        text("bucket", not_null=True),
        Column("delta", COUNT),
        Column("counted", COUNT),
        text("kind", not_null=True),
        text("event_id", not_null=True),
        text("event_type", not_null=True),
        Column("position", COUNT, not_null=True),
        Column("at", "timestamptz", not_null=True),
    ),
    key=("id",),
    indexes=(
        Index("by_position", '"sku", "location_id", "bucket", "position"'),
        Index("by_time", '"sku", "location_id", "at"'),
    ),
)

# Recomputes ``available`` of the rows a count touched, or of rows where a movement arrived
# that happened at or before the row's count (it arrived late, or the count was taken earlier
# than reported). ``position`` is the movement's time in microseconds (stock.py: ``mark``).
STOCK_REBASE_SQL = f"""
UPDATE {{rm_stock_levels}} AS l SET {Bucket.AVAILABLE} = l.counted + coalesce((
        SELECT sum(m.delta) FROM {{rm_stock_movements}} AS m
        WHERE m.sku = l.sku AND m.location_id = l.location_id AND m.bucket = '{Bucket.AVAILABLE}'
          AND m.kind <> 'count'
          AND (m.at, m.position) > (l.counted_at, l.counted_position)), 0)
FROM unnest(%(sku)s::text[], %(location_id)s::text[], %(position)s::bigint[])
    AS r(sku, location_id, position)
WHERE l.sku = r.sku AND l.location_id = r.location_id AND l.counted_position IS NOT NULL
  AND timestamptz 'epoch' + r.position * interval '1 microsecond' <= l.counted_at
RETURNING l.*"""


# ---------------------------------------------------------------- customer history
def customer_tables(min_returns: int, min_return_rate: Decimal) -> tuple[Table, ...]:
    """The thresholds of the serial-returner flag are part of the DDL (a generated column),
    so the flag is always consistent with the counts; changing them takes a rebuild."""
    if not isinstance(min_returns, int) or min_returns < 0:
        raise ValueError("min_returns must be a non-negative int")
    rate = Decimal(min_return_rate)
    if not rate.is_finite() or rate < 0:
        raise ValueError("min_return_rate must be a non-negative decimal")
    kept = "(returns - rejected_returns)"
    customers = Table(
        "rm_customers",
        (
            text("customer_id", not_null=True),
            counter("orders"),
            counter("cancelled_orders"),
            counter("replacement_orders"),
            counter("items_bought"),
            counter("returns"),
            counter("rejected_returns"),
            counter("blind_returns"),
            counter("in_store_returns"),
            counter("items_returned"),
            Column(
                "return_rate",
                "numeric",
                generated="CASE WHEN items_bought > 0 "
                "THEN round(items_returned::numeric / items_bought, 4) END",
            ),
            Column(
                "serial_returner",
                "boolean",
                generated=f"{kept} >= {min_returns} AND items_bought > 0 "
                f"AND items_returned::numeric / items_bought >= {rate}",
            ),
        ),
        key=("customer_id",),
    )
    money = Table(
        "rm_customer_money",
        (
            text("customer_id", not_null=True),
            text("currency", not_null=True),
            amount("spent"),
            amount("refunded"),
            amount("store_credit_issued"),
            amount("store_credit_refunded"),
            amount("store_credit_spent"),
            Column(
                "store_credit_balance",
                MONEY,
                generated="store_credit_issued + store_credit_refunded - store_credit_spent",
            ),
        ),
        key=("customer_id", "currency"),
    )
    timeline = Table(
        "rm_customer_timeline",
        (
            text("id", not_null=True),
            text("customer_id", not_null=True),
            text("aggregate_id", not_null=True),
            text("event_type", not_null=True),
            Column("position", COUNT, not_null=True),
            Column("at", "timestamptz", not_null=True),
            Column("summary", "jsonb", not_null=True),
        ),
        key=("id",),
        indexes=(Index("by_customer", '"customer_id", "at", "position"'),),
    )
    return customers, money, timeline


# ---------------------------------------------------------------- refund ledger
LEDGER_LINES = Table(
    "rm_ledger_lines",
    (
        text("id", not_null=True),
        text("refund_id", not_null=True),
        text("return_id", not_null=True),
        text("entry", not_null=True),
        text("account", not_null=True),
        amount("debit"),
        amount("credit"),
        text("currency", not_null=True),
        text("event_id", not_null=True),
        text("event_type", not_null=True),
        Column("position", COUNT, not_null=True),
        Column("at", "timestamptz", not_null=True),
        Column("day", "date", not_null=True),
    ),
    key=("id",),
    indexes=(
        Index("by_refund", '"refund_id"'),
        Index("by_account", '"account", "day"'),
    ),
)

LEDGER_BALANCES = Table(
    "rm_ledger_balances",
    (
        text("account", not_null=True),
        text("currency", not_null=True),
        Column("day", "date", not_null=True),
        amount("debit"),
        amount("credit"),
        Column("balance", MONEY, generated="debit - credit"),
    ),
    key=("account", "currency", "day"),
)

REFUNDS = Table(
    "rm_refunds",
    (
        text("refund_id", not_null=True),
        text("return_id", not_null=True),
        text("kind", not_null=True),
        text("currency", not_null=True),
        Column("requested", MONEY, not_null=True),
        Column("settled", MONEY, not_null=True),
        Column("failed", MONEY, not_null=True),
        Column("outstanding", MONEY, generated="requested - settled - failed"),
        Column("restocking_fee", MONEY, not_null=True),
        text("status", not_null=True),
        Column("keep_item", "boolean", not_null=True),
        text("methods", not_null=True),
        text("provider_reference"),
        text("failure_reason"),
        Column("requested_at", "timestamptz"),
        Column("settled_at", "timestamptz"),
        Column("failed_at", "timestamptz"),
    ),
    key=("refund_id",),
    indexes=(
        Index("by_return", '"return_id"'),
        # The refunds queues (failed, pending too long) of /v1/queues.
        Index("by_status", '"status", "requested_at"'),
    ),
)


# ---------------------------------------------------------------- return reasons and costs
RETURN_REASONS = Table(
    "rm_return_reasons",
    (
        text("reason", not_null=True),
        text("sku", not_null=True),
        text("supplier", not_null=True),
        text("category", not_null=True),
        text("channel", not_null=True),
        counter("returns"),
        counter("items"),
        counter("rejected"),
    ),
    key=("reason", "sku", "supplier", "category", "channel"),
)

ITEMS_SOLD = Table(
    "rm_items_sold",
    (
        text("sku", not_null=True),
        text("supplier", not_null=True),
        text("category", not_null=True),
        text("channel", not_null=True),
        counter("items"),
        counter("order_lines"),
    ),
    key=("sku", "supplier", "category", "channel"),
)

RETURN_COSTS = Table(
    "rm_return_costs",
    (
        text("supplier", not_null=True),
        text("sku", not_null=True),
        text("currency", not_null=True),
        amount("refunded"),
        amount("restocking_fees_kept"),
        counter("scrapped_items"),
        amount("scrapped_value"),
        counter("open_repair_legs"),
        counter("open_vendor_legs"),
        amount("supplier_credits"),
    ),
    key=("supplier", "sku", "currency"),
)


# ---------------------------------------------------------------- RMA status
RMA_STATUS = Table(
    "rm_rma_status",
    (
        text("return_id", not_null=True),
        text("rma_number"),
        text("order_id"),
        text("order_number"),
        text("customer_id"),
        text("status", not_null=True),
        text("channel"),
        text("order_channel"),
        text("method"),
        text("refund_method"),
        text("currency"),
        Column("blind", "boolean", not_null=True),
        text("store_id"),
        text("destination_warehouse"),
        text("label_reference"),
        Column("lines", "jsonb", not_null=True),
        Column("expected_refund", MONEY),
        Column("restocking_fee", MONEY),
        Column("refund_due", MONEY),
        Column("refunded", MONEY),
        Column("store_credit", MONEY),
        text("replacement_order_number"),
        text("rejection_code"),
        text("closed_outcome"),
        Column("requested_at", "timestamptz"),
        Column("authorized_at", "timestamptz"),
        Column("received_at", "timestamptz"),
        Column("inspected_at", "timestamptz"),
        Column("refunded_at", "timestamptz"),
        Column("closed_at", "timestamptz"),
        Column("updated_at", "timestamptz", not_null=True),
        Column("version", COUNT, not_null=True),
        text("last_event", not_null=True),
    ),
    key=("return_id",),
    indexes=(
        Index("by_rma", '"rma_number"'),
        Index("by_customer", '"customer_id", "requested_at"'),
        Index("by_order", '"order_number"'),
        Index("by_status", '"status", "updated_at"'),
        # The search and queues of GET /v1/returns and /v1/queues (routes_queues.py): the
        # default sort, the period filters, a store's or a warehouse's RMAs, and the SKUs
        # of the lines (jsonb containment). Each costs one index write per RMA event.
        Index("by_updated", '"updated_at", "return_id"'),
        Index("by_requested", '"requested_at", "return_id"'),
        Index("by_store", '"store_id", "updated_at"'),
        Index("by_warehouse", '"destination_warehouse", "updated_at"'),
        Index("by_lines", '"lines" jsonb_path_ops', using="gin"),
    ),
)

RMA_TIMELINE = Table(
    "rm_rma_timeline",
    (
        text("id", not_null=True),
        text("return_id", not_null=True),
        Column("version", COUNT, not_null=True),
        text("event_type", not_null=True),
        text("status", not_null=True),
        text("actor"),
        text("source"),
        Column("position", COUNT, not_null=True),
        Column("at", "timestamptz", not_null=True),
        Column("summary", "jsonb", not_null=True),
    ),
    key=("id",),
    indexes=(Index("by_return", '"return_id", "version"'),),
)


# ---------------------------------------------------------------- serials
SERIAL_EVENTS = Table(
    "rm_serial_events",
    (
        text("id", not_null=True),
        text("serial", not_null=True),
        text("kind", not_null=True),
        # Where the item is after this entry (projections/serials.py: STATES); NULL: unchanged.
        text("state"),
        text("customer_id"),
        text("location_id"),
        text("order_number"),
        text("rma_number"),
        text("aggregate_id", not_null=True),
        text("event_id", not_null=True),
        text("event_type", not_null=True),
        Column("position", COUNT, not_null=True),
        Column("at", "timestamptz", not_null=True),
        Column("summary", "jsonb", not_null=True),
    ),
    key=("id",),
    indexes=(
        Index("by_serial", '"serial", "at", "position"'),
        Index("sales", '"kind", "at"'),
    ),
)


# ---------------------------------------------------------------- repair and vendor legs
LEGS = Table(
    "rm_legs",
    (
        text("return_id", not_null=True),
        text("leg_id", not_null=True),
        text("rma_number"),
        text("kind", not_null=True),
        text("status", not_null=True),
        Column("open", "boolean", not_null=True),
        text("sku", not_null=True),
        text("serial"),
        Column("quantity", COUNT, not_null=True),
        text("supplier", not_null=True),
        text("location_id"),
        text("partner"),
        text("reference"),
        text("outcome"),
        text("replacement_serial"),
        text("restocked_at"),
        Column("credit", MONEY),
        text("credit_reference"),
        text("currency"),
        Column("opened_at", "timestamptz", not_null=True),
        Column("status_since", "timestamptz", not_null=True),
        Column("closed_at", "timestamptz"),
    ),
    key=("return_id", "leg_id"),
    # The queue: open legs, oldest first.
    indexes=(Index("open_by_age", '"open", "opened_at"'),),
)
