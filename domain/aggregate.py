"""A small event-sourced aggregate base: commands decide, ``apply`` evolves.

Command methods check their guards first and only then trigger events; ``apply`` never
checks anything, so replaying history can never fail because a rule changed since.
The class satisfies the protocols of the ``eventsourcing`` library (id, version,
``collect_events``), so its Application and Repository store and load it directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Generic, Self, TypeVar
from uuid import UUID

from domain.events import Cause, DomainEvent

E = TypeVar("E", bound=DomainEvent)


class Aggregate(Generic[E]):
    def __init__(self, aggregate_id: UUID) -> None:
        self._id = aggregate_id
        self._version = 0
        self._created_on: datetime | None = None
        self._modified_on: datetime | None = None
        self._pending: list[E] = []
        # Every event applied, stored or new: enough to rebuild any earlier state exactly.
        self._history: list[E] = []

    @property
    def id(self) -> UUID:
        return self._id

    @property
    def version(self) -> int:
        return self._version

    @version.setter
    def version(self, value: int) -> None:
        self._version = value

    @property
    def created_on(self) -> datetime | None:
        return self._created_on

    @property
    def modified_on(self) -> datetime | None:
        return self._modified_on

    @property
    def pending_events(self) -> list[E]:
        return list(self._pending)

    def collect_events(self) -> list[E]:
        collected, self._pending = self._pending, []
        return collected

    def _trigger(self, event_class: type[E], cause: Cause, at: datetime, **fields: Any) -> E:
        event = event_class(
            originator_id=self._id,
            originator_version=self._version + 1,
            timestamp=at,
            cause=cause,
            **fields,
        )
        self._mutate(event)
        self._pending.append(event)
        return event

    def _mutate(self, event: E) -> None:
        self._history.append(event)
        self.apply(event)
        self._version = event.originator_version
        if self._created_on is None:
            self._created_on = event.timestamp
        self._modified_on = event.timestamp

    def apply(self, event: E) -> None:
        raise NotImplementedError

    def checkpoint(self) -> tuple[int, int]:
        return len(self._history), len(self._pending)

    def rolled_back(self, checkpoint: tuple[int, int]) -> Self:
        """A copy of this aggregate as it was at ``checkpoint`` (events since are dropped)."""
        applied, pending = checkpoint
        earlier = type(self).replay(self._id, self._history[:applied])
        earlier._pending = self._pending[:pending]
        return earlier

    @classmethod
    def replay(cls, aggregate_id: UUID, events: Iterable[E]) -> Self:
        aggregate = cls(aggregate_id)
        for event in events:
            aggregate._mutate(event)
        return aggregate
