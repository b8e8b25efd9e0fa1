"""``ReadModelStore``: the live projectors' one write path, and the tables it creates."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Self

from adapters.driven.readmodels.base import (
    _DDL_LOCK,
    POISON,
    RETRYABLE,
    ChangedRow,
    Conn,
    Offsets,
    _connect,
    _Isolate,
    _lock_key,
    _shared_locks_sql,
)
from adapters.driven.readmodels.positions import _record_low_watermark
from adapters.driven.readmodels.writer import _apply_isolating, apply_batches
from projections.core import (
    Event,
    Projection,
    all_tables,
)
from projections.schema import OFFSETS_DDL, Table

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the store
class ReadModelStore:
    """Owns one connection; not for concurrent use by several threads (one per worker).

    A connection the server dropped (a restart, a failover, a killed backend) is replaced
    at the next use: the call that met the outage raises, its caller retries the batch
    (the workers treat an unreachable database as transient), and the retry reconnects.
    """

    def __init__(
        self,
        database_url: str,
        projections: Iterable[Projection] = (),
        *,
        max_attempts: int = 8,
    ) -> None:
        self.database_url = database_url
        self.max_attempts = max_attempts
        self._conn = _connect(database_url)
        self._ready: set[str] = set()
        for projection in projections:
            self.ensure(projection)

    def _live(self) -> Conn:
        if self._conn.closed or self._conn.broken:
            log.warning("read-model store: the database connection was lost; reconnecting")
            self._conn = _connect(self.database_url)
        return self._conn

    def ensure(self, projection: Projection) -> None:
        """Create the projection's tables (idempotent; serialized across processes)."""
        if projection.name in self._ready:
            return
        create_tables(self._live(), projection)
        self._ready.add(projection.name)

    def apply(
        self,
        projection: Projection,
        events: Sequence[Event],
        offsets: Offsets | None = None,
    ) -> list[ChangedRow]:
        """Apply a batch in one transaction and return the rows it changed.

        ``offsets``: the next offset to consume per (topic, partition), committed with the
        rows. Give events their ``topic``/``partition`` (``Event.from_cloud_event``) so
        the store can record, per partition, the event-store position applied.
        """
        return self.apply_many([projection], events, offsets)

    def apply_many(
        self,
        projections: Sequence[Projection],
        events: Sequence[Event],
        offsets: Offsets | None = None,
        before_commit: Callable[[list[ChangedRow]], None] | None = None,
    ) -> list[ChangedRow]:
        """``apply`` for several projections at once, all of them in ONE transaction.

        Each projection keeps its own states, rows and offsets (it stays independent and
        rebuildable alone); only the commit is shared, which is what a batch costs most.
        ``before_commit`` gets the changed rows while the transaction is still open: if it
        raises, nothing commits. A batch re-applied after a commit changes no row, so what
        must go out with the rows (their topics) has to go out before the commit.
        """
        # One fixed order: two workers lock rows of several projections, never crosswise.
        chosen = sorted(projections, key=lambda p: p.name)
        self._live()
        for projection in chosen:
            self.ensure(projection)
        locks = sorted({_lock_key(p) for p in chosen})
        lock_sql = _shared_locks_sql(len(locks))
        isolate = False
        attempt = 0
        while attempt < self.max_attempts:
            attempt += 1
            try:
                with self._conn.transaction():
                    # Shared: batches run side by side; a rebuild's switch-over takes it
                    # exclusive, so no batch commits into tables about to be replaced.
                    self._conn.execute(lock_sql, locks)
                    if isolate:
                        changed = _apply_isolating(self._conn, chosen, events, offsets=offsets)
                    else:
                        try:
                            changed = apply_batches(self._conn, chosen, events, offsets=offsets)
                        except POISON as poison:
                            # Found only now, this cheaply: the whole batch is the fast path.
                            raise _Isolate from poison
                    if before_commit is not None and changed:
                        before_commit(changed)
                    return changed
            except _Isolate as found:
                log.info("a batch holds an event that cannot be applied: %r", found.__cause__)
                isolate = True
                attempt -= 1
            except RETRYABLE as conflict:
                if attempt == self.max_attempts:
                    raise
                names = ", ".join(p.name for p in chosen)
                log.debug("batch of %s lost a race, retrying: %r", names, conflict)
                time.sleep(min(0.005 * 2**attempt, 0.2) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def offsets(self, projection: Projection) -> dict[tuple[str, int], int]:
        """Where a restarted worker resumes: the next offset per (topic, partition)."""
        self.ensure(projection)
        rows = (
            self._live()
            .execute(
                "SELECT topic, partition, next_offset FROM rm_offsets WHERE projection = %s",
                [projection.name],
            )
            .fetchall()
        )
        return {(topic, partition): offset for topic, partition, offset in rows}

    def register_partitions(
        self, projection: Projection, partitions: Iterable[tuple[str, int]]
    ) -> None:
        """Record partitions assigned to a worker before it consumed anything from them.

        The projection's event-store position is the lowest over its partitions; a
        partition that delivered nothing yet must hold it at zero, or the relay would not
        refill that partition's events after a broker loss.
        """
        self.ensure(projection)
        pairs = sorted(set(partitions))
        if not pairs:
            return
        conn = self._live()
        with conn.transaction():
            conn.execute(
                "INSERT INTO rm_offsets (projection, topic, partition, next_offset, position)"
                " SELECT %s, t, p, 0, 0 FROM unnest(%s::text[], %s::int[]) AS u(t, p)"
                " ON CONFLICT DO NOTHING",
                [projection.name, [t for t, _ in pairs], [p for _, p in pairs]],
            )
            _record_low_watermark(conn, projection)

    @property
    def connection(self) -> Conn:
        """For queries (``stock_at``, ``snapshot``); do not hold a transaction open on it."""
        return self._live()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def create_tables(conn: Conn, projection: Projection, suffix: str = "") -> None:
    with conn.transaction():
        # Two workers starting at once would race on the catalog (CREATE ... IF NOT EXISTS
        # is not atomic against itself).
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK])
        for statement in OFFSETS_DDL:
            conn.execute(statement.encode())
        for table in all_tables(projection):
            # Only missing tables: CREATE INDEX IF NOT EXISTS still share-locks an existing
            # table, which deadlocks with batches writing to it. A table and its indexes
            # are created in one transaction, so an existing table has them all.
            found = conn.execute(
                "SELECT to_regclass(%s)", [f'"{table.physical(suffix)}"']
            ).fetchone()
            if found is None or found[0] is None:
                for statement in table.ddl(suffix):
                    conn.execute(statement.encode())
            else:
                _add_missing_columns(conn, table, suffix)


def _add_missing_columns(conn: Conn, table: Table, suffix: str) -> None:
    """A column a newer release added to an existing table (a counter with its default, a
    generated one) is added in place, so an upgrade does not leave the projector failing
    its batches on it until someone rebuilds; rows written before it hold the default,
    which is what the older events meant (no such movement then). Checked once per
    process and projection; the lock is taken only when something is missing."""
    name = table.physical(suffix)
    present = {
        str(row[0])
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s",
            [name],
        ).fetchall()
    }
    for column in table.columns:
        if column.name not in present:
            log.warning("read-model store: adding column %s to %s", column.name, name)
            conn.execute(f'ALTER TABLE "{name}" ADD COLUMN {column.ddl()}'.encode())
