"""One transaction's worth of commands: aggregates loaded once, changes committed together.

Commands inside a unit are isolated: one the domain refuses leaves the aggregates as they
were before it, so a batch of inbound messages commits every valid one and reports the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import Tracking

from domain.aggregate import Aggregate

A = TypeVar("A", bound=Aggregate[Any])


class UnitOfWork:
    def __init__(self, loader: Callable[[type[Any], UUID], Any]) -> None:
        self._load = loader
        self.aggregates: dict[UUID, Aggregate[Any]] = {}
        self.missing: set[UUID] = set()
        self.command_results: dict[str, bytes] = {}
        self.prior_results: dict[str, bytes] | None = None
        """Results of keys already used, fetched in bulk; None: ask the store per key."""
        self.trackings: list[Tracking] = []
        self.read_versions: dict[UUID, int] = {}
        """The version each aggregate had in the store when this unit read it (0: absent)."""
        self._touched: dict[UUID, tuple[int, int] | None] | None = None
        self.optimistic = False
        """First attempts skip reads whose answer a commit conflict would reveal anyway."""

    def get(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate as this unit sees it (its own changes included), or None."""
        if aggregate_id in self.aggregates:
            found = self.aggregates[aggregate_id]
        elif aggregate_id in self.missing:
            return None
        else:
            loaded = self._load(cls, aggregate_id)
            self.read_versions[aggregate_id] = loaded.version if loaded is not None else 0
            if loaded is None:
                self._remember(aggregate_id, None)
                self.missing.add(aggregate_id)
                return None
            self.aggregates[aggregate_id] = loaded
            found = loaded
        if not isinstance(found, cls):
            raise TypeError(f"{aggregate_id} is a {type(found).__name__}, not a {cls.__name__}")
        self._remember(aggregate_id, found)
        return found

    def is_new(self, cls: type[A], aggregate_id: UUID) -> bool:
        """Whether the aggregate does not exist yet.

        An optimistic unit assumes so without reading: a wrong guess fails the commit on the
        event store's key, and the rerun (not optimistic) reads and refuses properly.
        """
        if self.optimistic and aggregate_id not in self.aggregates:
            return aggregate_id not in self.read_versions or aggregate_id in self.missing
        return self.get(cls, aggregate_id) is None

    def preload(self, loaded: dict[UUID, Aggregate[Any] | None]) -> None:
        """Seed the unit with aggregates read in bulk (None: known not to exist)."""
        for aggregate_id, aggregate in loaded.items():
            if aggregate_id in self.aggregates or aggregate_id in self.missing:
                continue
            self.read_versions[aggregate_id] = aggregate.version if aggregate else 0
            if aggregate is None:
                self.missing.add(aggregate_id)
            else:
                self.aggregates[aggregate_id] = aggregate

    def add(self, aggregate: Aggregate[Any]) -> None:
        self._remember(aggregate.id, None)
        self.missing.discard(aggregate.id)
        self.aggregates[aggregate.id] = aggregate

    def _remember(self, aggregate_id: UUID, aggregate: Aggregate[Any] | None) -> None:
        # A checkpoint on first touch is what lets a refused command be undone exactly;
        # it costs nothing unless a command is refused (then the aggregate is replayed).
        if self._touched is not None and aggregate_id not in self._touched:
            self._touched[aggregate_id] = aggregate.checkpoint() if aggregate else None

    @contextmanager
    def isolated(self) -> Iterator[set[UUID]]:
        """Run one command; if it raises, put back every aggregate it touched.

        Yields the set of aggregate ids the command reads, filled as it runs.
        """
        outer, self._touched = self._touched, {}
        read: set[UUID] = set()
        try:
            yield read
        except BaseException:
            read.update(self._touched)
            for aggregate_id, before in self._touched.items():
                if aggregate_id in self.missing and before is None:
                    continue
                if before is None:
                    self.aggregates.pop(aggregate_id, None)
                else:
                    current = self.aggregates[aggregate_id]
                    self.aggregates[aggregate_id] = current.rolled_back(before)
            raise
        finally:
            self._touched = outer

    def changed(self) -> list[Aggregate[Any]]:
        return [a for a in self.aggregates.values() if a.pending_events]
