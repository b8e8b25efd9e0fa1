"""The PostgreSQL event store: the library's process recorder plus our lookup tables.

Lookup rows, idempotency keys and consumed positions are written on the same connection
and in the same transaction as the events (``_insert_events`` runs inside the library's
insert transaction), so none of them can exist without the events or vice versa.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit
from uuid import UUID

import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.application import ReturnsService
from domain.lookups import BlindCandidateRows, Deadline, LookupRows, SerialRow
from domain.policy import PolicyBook

LOOKUP_TABLES = [
    """CREATE TABLE IF NOT EXISTS oms_orders (
        order_id uuid PRIMARY KEY,
        order_number text NOT NULL UNIQUE,
        customer_id text NOT NULL,
        customer_email text,
        placed_at timestamptz)""",
    "CREATE INDEX IF NOT EXISTS oms_orders_customer ON oms_orders (customer_id)",
    "CREATE INDEX IF NOT EXISTS oms_orders_email ON oms_orders (lower(customer_email))",
    """CREATE TABLE IF NOT EXISTS oms_serials (
        serial text NOT NULL,
        order_id uuid NOT NULL,
        line_no int NOT NULL,
        PRIMARY KEY (serial, order_id, line_no))""",
    """CREATE TABLE IF NOT EXISTS oms_rma_numbers (
        rma_number text PRIMARY KEY,
        return_id uuid NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS oms_returns (
        return_id uuid PRIMARY KEY,
        rma_number text,
        order_id uuid,
        customer_id text,
        status text NOT NULL,
        blind boolean NOT NULL,
        authorized_at timestamptz,
        updated_at timestamptz)""",
    "CREATE INDEX IF NOT EXISTS oms_returns_order ON oms_returns (order_id)",
    "CREATE INDEX IF NOT EXISTS oms_returns_rma ON oms_returns (rma_number)",
    """CREATE INDEX IF NOT EXISTS oms_returns_blind_open ON oms_returns (updated_at)
        WHERE blind AND status = 'blind_unmatched'""",
    """CREATE INDEX IF NOT EXISTS oms_returns_authorized ON oms_returns (authorized_at)
        WHERE status = 'authorized'""",
    # When each return was opened, for the review rule on serial returners. Rows written
    # before the column existed take their authorization (or last change) as the best
    # time known; the UPDATE finds none once they are filled.
    "ALTER TABLE oms_returns ADD COLUMN IF NOT EXISTS created_at timestamptz",
    """UPDATE oms_returns SET created_at = COALESCE(authorized_at, updated_at)
        WHERE created_at IS NULL""",
    """CREATE INDEX IF NOT EXISTS oms_returns_customer ON oms_returns (customer_id, created_at)
        WHERE customer_id IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS oms_refunds (
        refund_id text PRIMARY KEY,
        return_id uuid NOT NULL)""",
    # Where each refund stands, for the re-send of those the provider never answered.
    # Added to the first version's table; its older rows have no status (NULL: unknown, and
    # the refund dispatcher reads those RMAs to find out).
    """ALTER TABLE oms_refunds ADD COLUMN IF NOT EXISTS status text,
        ADD COLUMN IF NOT EXISTS requested_at timestamptz,
        ADD COLUMN IF NOT EXISTS amount numeric,
        ADD COLUMN IF NOT EXISTS currency text""",
    """CREATE INDEX IF NOT EXISTS oms_refunds_open ON oms_refunds (requested_at)
        WHERE status IS NULL OR status = 'requested'""",
    # Delivery bookkeeping of the refund dispatcher (adapters/driven/refunds.py), not derived from
    # events: how often each refund went to the provider, and an operator's re-send request.
    """CREATE TABLE IF NOT EXISTS oms_refund_dispatches (
        refund_id text PRIMARY KEY,
        attempts int NOT NULL DEFAULT 0,
        last_dispatched_at timestamptz,
        resend_requested_at timestamptz,
        resend_requested_by text)""",
    # Deadlines of RMAs (domain/lookups.py DeadlineRow), for the expiry sweeps. An RMA
    # authorized before this table existed gets its row from oms_returns once; its next
    # commit rewrites it from the aggregate.
    """CREATE TABLE IF NOT EXISTS oms_return_deadlines (
        return_id uuid PRIMARY KEY,
        ship_clock_from timestamptz,
        offer_expires_at timestamptz)""",
    """CREATE INDEX IF NOT EXISTS oms_return_deadlines_ship ON oms_return_deadlines
        (ship_clock_from, return_id) WHERE ship_clock_from IS NOT NULL""",
    """CREATE INDEX IF NOT EXISTS oms_return_deadlines_offer ON oms_return_deadlines
        (offer_expires_at, return_id) WHERE offer_expires_at IS NOT NULL""",
    """INSERT INTO oms_return_deadlines (return_id, ship_clock_from)
        SELECT return_id, authorized_at FROM oms_returns WHERE status = 'authorized'
        ON CONFLICT DO NOTHING""",
    # Which orders hold a SKU (blind-return suggestions); orders placed before this table
    # existed have no rows, so a SKU finds only orders placed since.
    """CREATE TABLE IF NOT EXISTS oms_order_skus (
        sku text NOT NULL,
        order_id uuid NOT NULL,
        placed_at timestamptz,
        PRIMARY KEY (sku, order_id))""",
    "CREATE INDEX IF NOT EXISTS oms_order_skus_recent ON oms_order_skus (sku, placed_at DESC)",
    # Which account a store-credit code spends (the code is the key: one account each).
    """CREATE TABLE IF NOT EXISTS oms_store_credit_codes (
        code text PRIMARY KEY,
        customer_id text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS oms_command_log (
        key text PRIMARY KEY,
        result bytea NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now())""",
]

INSERT_ORDERS = SQL(
    "INSERT INTO oms_orders (order_id, order_number, customer_id, customer_email, placed_at)"
    " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])"
    " ON CONFLICT DO NOTHING"
)
INSERT_SERIALS = SQL(
    "INSERT INTO oms_serials (serial, order_id, line_no)"
    " SELECT * FROM unnest(%s::text[], %s::uuid[], %s::int[]) ON CONFLICT DO NOTHING"
)
INSERT_ORDER_SKUS = SQL(
    "INSERT INTO oms_order_skus (sku, order_id, placed_at)"
    " SELECT * FROM unnest(%s::text[], %s::uuid[], %s::timestamptz[]) ON CONFLICT DO NOTHING"
)
INSERT_STORE_CREDIT_CODES = SQL(
    "INSERT INTO oms_store_credit_codes (code, customer_id)"
    " SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING"
)
UPSERT_RETURNS = SQL(
    "INSERT INTO oms_returns (return_id, rma_number, order_id, customer_id, status, blind,"
    " authorized_at, updated_at, created_at) SELECT * FROM unnest(%s::uuid[], %s::text[],"
    " %s::uuid[], %s::text[], %s::text[], %s::boolean[], %s::timestamptz[],"
    " %s::timestamptz[], %s::timestamptz[])"
    " ON CONFLICT (return_id) DO UPDATE SET rma_number = EXCLUDED.rma_number,"
    " order_id = EXCLUDED.order_id, customer_id = EXCLUDED.customer_id,"
    " status = EXCLUDED.status, blind = EXCLUDED.blind,"
    " authorized_at = EXCLUDED.authorized_at, updated_at = EXCLUDED.updated_at,"
    " created_at = COALESCE(oms_returns.created_at, EXCLUDED.created_at)"
)
UPSERT_REFUNDS = SQL(
    "INSERT INTO oms_refunds (refund_id, return_id, status, requested_at, amount, currency)"
    " SELECT * FROM unnest(%s::text[], %s::uuid[], %s::text[], %s::timestamptz[],"
    " %s::numeric[], %s::text[])"
    " ON CONFLICT (refund_id) DO UPDATE SET status = EXCLUDED.status,"
    " requested_at = COALESCE(oms_refunds.requested_at, EXCLUDED.requested_at),"
    " amount = COALESCE(oms_refunds.amount, EXCLUDED.amount),"
    " currency = COALESCE(oms_refunds.currency, EXCLUDED.currency)"
)

UPSERT_DEADLINES = SQL(
    "INSERT INTO oms_return_deadlines (return_id, ship_clock_from, offer_expires_at)"
    " SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::timestamptz[])"
    " ON CONFLICT (return_id) DO UPDATE SET ship_clock_from = EXCLUDED.ship_clock_from,"
    " offer_expires_at = EXCLUDED.offer_expires_at"
)

# The blind-parcel matching sources for a page of parcels in one statement: sales by
# serial, claimed RMAs (with their order), then the recent orders of every customer those
# and the hinted orders belong to, and of every SKU; ``n`` keeps each list's order.
BLIND_CANDIDATES = """
WITH sales AS (
    SELECT serial, order_id, line_no FROM oms_serials WHERE serial = ANY(%s::text[])),
claimed AS (
    SELECT n.rma_number, n.return_id, r.order_id FROM oms_rma_numbers n
    LEFT JOIN oms_returns r ON r.return_id = n.return_id WHERE n.rma_number = ANY(%s::text[])),
named AS (
    SELECT order_id FROM sales
    UNION SELECT order_id FROM claimed WHERE order_id IS NOT NULL
    UNION SELECT unnest(%s::uuid[])),
customers AS (
    SELECT DISTINCT o.customer_id FROM oms_orders o JOIN named ON named.order_id = o.order_id)
SELECT 'serial' AS kind, serial AS key, order_id AS id, line_no AS n, NULL::uuid AS extra
    FROM sales
UNION ALL SELECT 'rma', rma_number, return_id, 0, order_id FROM claimed
UNION ALL SELECT 'customer', c.customer_id, o.order_id, o.n, NULL FROM customers c
    CROSS JOIN LATERAL (
        SELECT order_id, row_number() OVER (ORDER BY placed_at DESC)::int AS n
        FROM oms_orders WHERE customer_id = c.customer_id ORDER BY placed_at DESC LIMIT %s) o
UNION ALL SELECT 'sku', k.sku, o.order_id, o.n, NULL FROM unnest(%s::text[]) AS k(sku)
    CROSS JOIN LATERAL (
        SELECT order_id,
            row_number() OVER (ORDER BY placed_at DESC NULLS LAST, order_id)::int AS n
        FROM oms_order_skus WHERE sku = k.sku
        ORDER BY placed_at DESC NULLS LAST, order_id LIMIT %s) o
"""

T = TypeVar("T")
ZERO = UUID(int=0)


def columns(rows: Sequence[T], row: Callable[[T], tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to one list per column, for ``unnest`` of typed arrays."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*(row(r) for r in rows), strict=True)]


class OmsRecorder(PostgresProcessRecorder):
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        self._insert_arrays = SQL(
            "INSERT INTO {0} (originator_id, originator_version, topic, state)"
            " SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[])"
            " RETURNING notification_id"
        ).format(Identifier(events_table_name))
        self.sql_create_statements.extend(SQL(statement).format() for statement in LOOKUP_TABLES)

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        trackings: Sequence[Tracking] = kwargs.get("trackings") or ()
        for tracking in trackings:
            self._insert_tracking(curs, tracking)
        results: Mapping[str, bytes] = kwargs.get("command_results") or {}
        if results:
            self._claim(
                curs,
                "INSERT INTO oms_command_log (key, result) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING RETURNING key",
                list(results.items()),
                "idempotency key already used",
            )
        rows: LookupRows | None = kwargs.get("lookup_rows")
        if rows:
            if rows.rma_numbers:
                self._claim(
                    curs,
                    "INSERT INTO oms_rma_numbers (rma_number, return_id) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING RETURNING rma_number",
                    [(r.rma_number, r.return_id) for r in rows.rma_numbers],
                    "RMA number already taken",
                )
            self._write_lookups(curs, rows)
            self._write_deadlines(curs, rows)

    @staticmethod
    def _claim(
        curs: Cursor[DictRow], statement: str, params: list[tuple[Any, ...]], what: str
    ) -> None:
        """Insert unique keys, raising IntegrityError if another transaction has any of them.

        ON CONFLICT plus RETURNING rather than a plain INSERT: in the library's pipelined
        transaction a unique violation aborts the pipeline and surfaces later as an opaque
        'pipeline aborted' OperationalError, which the library then retries for seconds.
        """
        curs.executemany(SQL(statement).format(), params, returning=True)
        claimed = 0
        while True:
            claimed += len(curs.fetchall())
            if not curs.nextset():
                break
        if claimed != len(params):
            raise IntegrityError(f"{what}: {len(params) - claimed} of {len(params)} lost a race")

    def _write_lookups(self, curs: Cursor[DictRow], rows: LookupRows) -> None:
        # One statement per table over column arrays: a batch of 500 commands writes four
        # statements, not 2,000.
        if rows.orders:
            curs.execute(
                INSERT_ORDERS,
                columns(
                    rows.orders,
                    lambda o: (
                        o.order_id,
                        o.order_number,
                        o.customer_id,
                        o.customer_email,
                        o.placed_at,
                    ),
                    5,
                ),
            )
        if rows.serials:
            curs.execute(
                INSERT_SERIALS,
                columns(rows.serials, lambda r: (r.serial, r.order_id, r.line_no), 3),
            )
        if rows.order_skus:
            curs.execute(
                INSERT_ORDER_SKUS,
                columns(rows.order_skus, lambda r: (r.sku, r.order_id, r.placed_at), 3),
            )
        if rows.store_credit_codes:
            curs.execute(
                INSERT_STORE_CREDIT_CODES,
                columns(rows.store_credit_codes, lambda r: (r.code, r.customer_id), 2),
            )
        if rows.returns:
            curs.execute(
                UPSERT_RETURNS,
                columns(
                    rows.returns,
                    lambda r: (
                        r.return_id,
                        r.rma_number,
                        r.order_id,
                        r.customer_id,
                        r.status,
                        r.blind,
                        r.authorized_at,
                        r.updated_at,
                        r.created_at,
                    ),
                    9,
                ),
            )
        if rows.refunds:
            curs.execute(
                UPSERT_REFUNDS,
                columns(
                    rows.refunds,
                    lambda r: (
                        r.refund_id,
                        r.return_id,
                        r.status,
                        r.requested_at,
                        r.amount,
                        r.currency,
                    ),
                    6,
                ),
            )

    @staticmethod
    def _write_deadlines(curs: Cursor[DictRow], rows: LookupRows) -> None:
        if rows.deadlines:
            curs.execute(
                UPSERT_DEADLINES,
                columns(
                    rows.deadlines,
                    lambda r: (r.return_id, r.ship_clock_from, r.offer_expires_at),
                    3,
                ),
            )

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # The library sends a text-encoded array of composites; four typed arrays in binary
        # cost the client far less CPU for the same rows, lock and notification.
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._insert_arrays,
            [
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ],
            binary=True,
        )

    # ------------------------------------------------------------ the Lookups port
    def _select(self, statement: str, params: Sequence[Any]) -> list[DictRow]:
        if any(isinstance(p, str) and "\x00" in p for p in params):
            # PostgreSQL text cannot hold NUL, so no stored key has one: nothing matches
            # (psycopg would refuse to send it, and a lookup is no place to fail).
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL(statement).format(), params, prepare=True)
            return list(curs.fetchall())

    def _one_uuid(self, statement: str, params: Sequence[Any]) -> UUID | None:
        rows = self._select(statement, params)
        return rows[0]["id"] if rows else None

    def order_id_for_number(self, order_number: str) -> UUID | None:
        return self._one_uuid(
            "SELECT order_id AS id FROM oms_orders WHERE order_number = %s", [order_number]
        )

    def orders_of_customer(self, customer_id: str, limit: int) -> list[UUID]:
        rows = self._select(
            "SELECT order_id FROM oms_orders WHERE customer_id = %s"
            " ORDER BY placed_at DESC LIMIT %s",
            [customer_id, limit],
        )
        return [r["order_id"] for r in rows]

    def orders_of_email(self, email: str, limit: int) -> list[UUID]:
        rows = self._select(
            "SELECT order_id FROM oms_orders WHERE lower(customer_email) = lower(%s)"
            " ORDER BY placed_at DESC LIMIT %s",
            [email, limit],
        )
        return [r["order_id"] for r in rows]

    def sales_of_serial(self, serial: str) -> list[SerialRow]:
        rows = self._select(
            "SELECT serial, order_id, line_no FROM oms_serials WHERE serial = %s", [serial]
        )
        return [SerialRow(r["serial"], r["order_id"], r["line_no"]) for r in rows]

    def return_id_for_rma(self, rma_number: str) -> UUID | None:
        return self._one_uuid(
            "SELECT return_id AS id FROM oms_rma_numbers WHERE rma_number = %s", [rma_number]
        )

    def return_id_for_refund(self, refund_id: str) -> UUID | None:
        return self._one_uuid(
            "SELECT return_id AS id FROM oms_refunds WHERE refund_id = %s", [refund_id]
        )

    def returns_of_order(self, order_id: UUID) -> list[UUID]:
        rows = self._select(
            "SELECT return_id FROM oms_returns WHERE order_id = %s ORDER BY updated_at", [order_id]
        )
        return [r["return_id"] for r in rows]

    def open_blind_returns(self, limit: int, offset: int) -> list[UUID]:
        rows = self._select(
            "SELECT return_id FROM oms_returns WHERE blind AND status = 'blind_unmatched'"
            " ORDER BY updated_at, return_id LIMIT %s OFFSET %s",
            [limit, offset],
        )
        return [r["return_id"] for r in rows]

    def awaiting_parcel_since(
        self, cutoff: datetime, limit: int, after: Deadline | None = None
    ) -> list[Deadline]:
        start = (
            (after.since, after.return_id) if after else (datetime.min.replace(tzinfo=UTC), ZERO)
        )
        rows = self._select(
            "SELECT return_id, ship_clock_from AS since FROM oms_return_deadlines"
            " WHERE ship_clock_from IS NOT NULL AND ship_clock_from <= %s"
            " AND (ship_clock_from, return_id) > (%s, %s)"
            " ORDER BY ship_clock_from, return_id LIMIT %s",
            [cutoff, *start, limit],
        )
        return [Deadline(r["return_id"], r["since"]) for r in rows]

    def offers_expired_by(self, at: datetime, limit: int) -> list[Deadline]:
        rows = self._select(
            "SELECT return_id, offer_expires_at AS since FROM oms_return_deadlines"
            " WHERE offer_expires_at IS NOT NULL AND offer_expires_at < %s"
            " ORDER BY offer_expires_at, return_id LIMIT %s",
            [at, limit],
        )
        return [Deadline(r["return_id"], r["since"]) for r in rows]

    def returns_of_customer_since(
        self, customer_id: str, since: datetime, until: datetime | None = None
    ) -> list[UUID]:
        rows = self._select(
            "SELECT return_id FROM oms_returns WHERE customer_id = %s AND created_at >= %s"
            " AND (%s::timestamptz IS NULL OR created_at < %s)",
            [customer_id, since, until, until],
        )
        return [r["return_id"] for r in rows]

    def orders_with_sku(self, sku: str, limit: int) -> list[UUID]:
        rows = self._select(
            "SELECT order_id FROM oms_order_skus WHERE sku = %s"
            " ORDER BY placed_at DESC NULLS LAST, order_id LIMIT %s",
            [sku, limit],
        )
        return [r["order_id"] for r in rows]

    def customer_of_store_credit_code(self, code: str) -> str | None:
        rows = self._select(
            "SELECT customer_id FROM oms_store_credit_codes WHERE code = %s", [code]
        )
        return str(rows[0]["customer_id"]) if rows else None

    def blind_candidate_rows(
        self,
        serials: Sequence[str],
        rma_numbers: Sequence[str],
        order_ids: Sequence[UUID],
        skus: Sequence[str],
        limit: int,
    ) -> BlindCandidateRows:
        found = BlindCandidateRows()
        if any("\x00" in key for key in (*serials, *rma_numbers, *skus)):
            # No stored key holds NUL (as in _select); drop those, look up the rest.
            serials, rma_numbers, skus = (
                [key for key in keys if "\x00" not in key] for keys in (serials, rma_numbers, skus)
            )
        params = [list(serials), list(rma_numbers), list(order_ids), limit, list(skus), limit]
        rows = self._select(BLIND_CANDIDATES, params)
        for r in sorted(rows, key=lambda r: (r["kind"], r["key"], r["n"] or 0)):
            kind, key = r["kind"], r["key"]
            if kind == "serial":
                found.sales.setdefault(key, []).append(SerialRow(key, r["id"], r["n"]))
            elif kind == "rma":
                found.returns_of_rma[key] = r["id"]
                if r["extra"] is not None:
                    found.order_of_return[r["id"]] = r["extra"]
            elif kind == "customer":
                found.orders_of_customer.setdefault(key, []).append(r["id"])
            else:
                found.orders_with_sku.setdefault(key, []).append(r["id"])
        return found

    def command_results(self, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        rows = self._select(
            "SELECT key, result FROM oms_command_log WHERE key = ANY(%s)", [list(keys)]
        )
        return {r["key"]: bytes(r["result"]) for r in rows}

    def load_events(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        if not aggregate_ids:
            return {}
        rows = self._select(
            f"SELECT originator_id, originator_version, topic, state FROM {self.events_table_name}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version",
            [list(set(aggregate_ids))],
        )
        found: dict[UUID, list[Any]] = {}
        for r in rows:
            found.setdefault(r["originator_id"], []).append(
                StoredEvent(r["originator_id"], r["originator_version"], r["topic"], r["state"])
            )
        return found

    def command_result(self, key: str) -> bytes | None:
        rows = self._select("SELECT result FROM oms_command_log WHERE key = %s", [key])
        return bytes(rows[0]["result"]) if rows else None


def eventsourcing_env(database_url: str, *, pool_size: int = 5) -> dict[str, str]:
    """Translate a postgresql:// URL into the library's environment settings."""
    parts = urlsplit(database_url)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise ValueError(f"expected a postgresql:// URL, got {parts.scheme!r}")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": (parts.path or "/postgres").lstrip("/") or "postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        # A pool of one deadlocks a follower (DESIGN.md); writers queue on the table lock anyway.
        "POSTGRES_POOL_SIZE": str(max(2, pool_size)),
        "POSTGRES_MAX_OVERFLOW": "10",
        # How long a caller waits for a pooled connection (the library's default is 30 s).
        # While the database refuses connections every worker attempt blocked that long
        # before its own backoff could retry, so recovery lagged the database by ~40 s.
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_SINGLE_ROW_TRACKING": "t",
        "PROCESS_RECORDER_TOPIC": get_topic(OmsRecorder),
        "CREATE_TABLE": "true",
    }


def create_service(
    database_url: str,
    *,
    policy_book: PolicyBook | None = None,
    pool_size: int = 5,
    default_warehouse: str = "WH-1",
    policy_file: Path | None = None,
) -> ReturnsService:
    """``policy_file``: the operators' policy, reloaded on change; a bad one raises
    PolicyFileError here, so a service never starts on it."""
    from adapters.driven.policy_file import PolicyFile

    return ReturnsService(
        eventsourcing_env(database_url, pool_size=pool_size),
        policy_book=policy_book,
        default_warehouse=default_warehouse,
        policy_source=PolicyFile(policy_file) if policy_file is not None else None,
    )


_UNAVAILABLE: tuple[type[BaseException], ...] = (
    # Connection lost or refused, server shutting down, pool exhausted: the database, not
    # the data. psycopg maps SQLSTATE classes 08, 53 and 57 to OperationalError; the library
    # re-raises them as its own OperationalError (its ConnectionUnavailableError included).
    psycopg.OperationalError,
    psycopg.InterfaceError,
    persistence.OperationalError,
    persistence.InterfaceError,
    ConnectionError,
    TimeoutError,
)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the database is out of reach for now.

    A data error (a value PostgreSQL refuses, a constraint) is about the records and fails
    again on every retry; an outage passes, so its batch must wait rather than be
    dead-lettered.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNAVAILABLE):
            return True
        current = current.__cause__ or current.__context__
    return False
