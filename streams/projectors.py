"""The projections worker: relayed events in, read models (PostgreSQL) and topics out.

Agents only decode, batch and hand the batch to the store, which applies it with its
offsets and per-aggregate versions in one transaction: a redelivered or republished event
changes nothing, so faust's at-least-once delivery is exactly once in effect. Rows a batch
changed go out on the projection's topic for analytics (compacted where keyed by entity).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faust
import orjson

from adapters.driven.eventstore import database_unavailable
from adapters.driven.kafka.publishers import ConfluentPublisher, Publisher
from adapters.driven.kafka.topics import (
    INVENTORY_EVENTS,
    ORDER_EVENTS,
    RMA_EVENTS,
    STORE_CREDIT_EVENTS,
)
from adapters.driven.readmodels.base import ChangedRow, topics_of
from adapters.driven.readmodels.positions import resume_points
from adapters.driven.readmodels.store import ReadModelStore
from adapters.settings import Settings
from projections import Event, Projection, default_projections
from streams.app import create_app
from streams.records import BatchHandler, DeadLetter, InboundRecord
from streams.resume import verified_offsets

log = logging.getLogger(__name__)

APP_ID = "oms-projections"
# The refund ledger reads the store-credit accounts too (spends take the liability down).
EVENT_TOPICS = (RMA_EVENTS, ORDER_EVENTS, INVENTORY_EVENTS, STORE_CREDIT_EVENTS)


@dataclass(frozen=True, slots=True)
class _RowRecord:
    topic: str
    key: bytes
    value: bytes


PublisherFactory = Callable[[], Publisher]


class Projector:
    """Applies batches of one topic to every projection that reads it, then publishes.

    ``publisher`` makes the producer of changed rows (None: rows are not published). A
    failed publication rolls its batch back and the producer is made anew for the retry:
    an idempotent producer whose broker lost its state stays broken (DESIGN.md, Tansu).
    """

    def __init__(
        self,
        store: ReadModelStore,
        projections: Sequence[Projection],
        publisher: PublisherFactory | None,
    ) -> None:
        self.store = store
        self.projections = list(projections)
        self._new_publisher = publisher
        self._publisher: Publisher | None = None if publisher is None else publisher()
        # The store owns one connection: one thread, so batches never share it.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projector")

    def handler(self, topic: str) -> BatchHandler:
        readers = [p for p in self.projections if topic in topics_of(p)]

        async def handle(records: Sequence[InboundRecord]) -> Sequence[DeadLetter]:
            events: list[Event] = []
            dead: list[DeadLetter] = []
            offsets: dict[tuple[str, int], int] = {}
            for record in records:
                offsets[(record.topic, record.partition)] = record.offset + 1
                try:
                    message = orjson.loads(record.value)
                    events.append(
                        Event.from_cloud_event(
                            message, topic=record.topic, partition=record.partition
                        )
                    )
                except (orjson.JSONDecodeError, ValueError, TypeError) as broken:
                    dead.append(DeadLetter(record, str(broken)[:500], "invalid_event"))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.executor, self.apply, readers, events, offsets)
            return dead

        return handle

    def register(self, assigned: Sequence[tuple[str, int]]) -> None:
        for projection in self.projections:
            mine = [(t, p) for t, p in assigned if t in topics_of(projection)]
            self.store.register_partitions(projection, mine)

    def apply(
        self,
        readers: Sequence[Projection],
        events: Sequence[Event],
        offsets: dict[tuple[str, int], int],
    ) -> None:
        # Every projection's rows, states and offsets in one commit: per batch, the commit
        # (and its WAL flush) costs more than any one projection's writes.
        self.store.apply_many(
            readers, events, offsets, before_commit=self.publish if self._publisher else None
        )

    def publish(self, changed: Sequence[ChangedRow]) -> None:
        """Changed rows onto their topics, acknowledged, before the batch commits.

        After the commit a redelivered batch changes nothing and so publishes nothing: a
        row not on its topic by then would be missing for good. Published first, a row
        is at worst published again (same key, same row) when the commit then fails.
        """
        assert self._publisher is not None and self._new_publisher is not None
        records = [
            _RowRecord(row.topic, row.key.encode(), orjson.dumps(row.row)) for row in changed
        ]
        try:
            # librdkafka sends from its own C threads: measured at 250/s, this step took
            # p50 25-50 ms with kafka-python (5 ms of CPU, the rest its Python sender
            # thread waiting for the GIL and a core), 7 ms with 0.5 ms of CPU here.
            self._publisher.publish(records)
        except Exception:  # PublishError, or a fatal error of librdkafka's producer
            broken, self._publisher = self._publisher, self._new_publisher()
            broken.close()
            raise  # the transaction rolls back; the batch is retried


def create_projections_app(
    settings: Settings, projector: Projector, *, app_id: str = APP_ID
) -> faust.App:
    bootstrap = settings.kafka_bootstrap
    if bootstrap is None:
        raise ValueError("the projections worker needs settings.kafka_bootstrap")

    async def resume(assigned: frozenset[tuple[str, int]]) -> dict[tuple[str, int], int]:
        # The offsets stored with the rows are exact where faust's trail them; see
        # streams.resume for why each is checked against the broker's log first.
        loop = asyncio.get_running_loop()
        points = await loop.run_in_executor(
            projector.executor,
            resume_points,
            projector.store.connection,
            projector.projections,
        )
        mine = {pair: point for pair, point in points.items() if pair in assigned}
        return await verified_offsets(bootstrap, mine)

    handlers = {topic: projector.handler(topic) for topic in EVENT_TOPICS}
    app = create_app(
        settings,
        app_id=app_id,
        handlers=handlers,
        batch_size=2000,
        resume=resume,
        # An outage is waited out, never dead-lettered: the store reconnects on the retry.
        transient=database_unavailable,
    )

    async def registered(sender: object, /, *args: object, **kwargs: object) -> None:
        # A partition that has delivered nothing yet must still hold the relay's refill
        # point down (see ReadModelStore.register_partitions).
        assigned = [(tp.topic, tp.partition) for tp in app.consumer.assignment()]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(projector.executor, projector.register, assigned)

    app.on_rebalance_complete.connect(registered)
    return app


def app_from_env() -> faust.App:
    """Factory for ``python -m streams.worker --app streams.projectors:app_from_env``."""
    settings = Settings.from_env()
    if settings.database_url is None or settings.kafka_bootstrap is None:
        raise SystemExit("the projections worker needs OMS_DATABASE_URL and OMS_KAFKA_BOOTSTRAP")
    projections = default_projections()
    store = ReadModelStore(settings.database_url, projections)
    bootstrap = settings.kafka_bootstrap
    projector = Projector(store, projections, lambda: ConfluentPublisher(bootstrap))
    return create_projections_app(settings, projector)
