"""The relay: the committed event log, in order, to Kafka, without loss.

It reads ``oms_events`` by notification id, publishes each event as a CloudEvent keyed by
its aggregate (so per-aggregate order holds), waits for the broker's acks, and only then
records its position in PostgreSQL. A crash between the two republishes a tail whose
events carry the same ids, which consumers dedupe. Nothing publishes in the command path.

Latency without polling PostgreSQL hard: when it has caught up it LISTENs on the channel
the event store NOTIFYs on every insert, with a one-second timeout as a safety net.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from kafka.errors import KafkaError

from adapters.driven.kafka.provisioning import TopicProvisioningError, TopicSpec, provision_topics
from adapters.driven.kafka.publishers import Client, Publisher, PublishError, publisher_for
from adapters.driven.kafka.topics import (
    EVENT_TOPIC_BY_KIND,
    NOTIFICATIONS,
    RELAY_EPOCH,
    UNKNOWN_EVENTS,
)
from domain.events import EVENT_TYPES

log = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS oms_relay_positions (
        name text PRIMARY KEY,
        notification_id bigint NOT NULL,
        epoch text,
        updated_at timestamptz NOT NULL DEFAULT now())""",
    # Each consumer of the relayed topics records the last event-store position it applied;
    # after the broker loses its data the relay refills it from the lowest of them.
    """CREATE TABLE IF NOT EXISTS oms_consumer_positions (
        consumer text PRIMARY KEY,
        notification_id bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())""",
]

# The customer hears about these; the message is built from the stored event alone.
NOTIFY_TEMPLATES = {
    "rma.authorized": "return_authorized",
    "rma.parcel_received": "parcel_received",
    "rma.refund_settled": "refund_issued",
    "rma.store_credit_issued": "store_credit_issued",
    "rma.expired": "return_expired",
    "rma.keep_item_lapsed": "keep_item_offer_lapsed",
    # The customer learns the replacement's number and, for a dearer one, what they owe.
    "rma.exchange_ordered": "exchange_ordered",
    # An instant exchange's items never came back: the customer learns what they owe.
    "rma.instant_exchange_charged": "instant_exchange_charged",
}

KIND_BY_TYPE = {name: cls.aggregate_kind for name, cls in EVENT_TYPES.items()}


@dataclass(frozen=True)
class OutboundRecord:
    topic: str
    key: bytes
    value: bytes


@dataclass
class RelayStats:
    published: int = 0
    batches: int = 0
    position: int = 0
    epochs: list[str] = field(default_factory=list)


def cloud_event_for(row: tuple[int, Any, int, str, bytes]) -> dict[str, Any]:
    """The outbound CloudEvent of one ``oms_events`` row (notification_id, originator_id,
    originator_version, topic, state): what the relay publishes and what a rebuild replays."""
    notification_id, originator_id, version, type_name, state = row
    body = orjson.loads(state)
    kind = KIND_BY_TYPE.get(type_name, "unknown")
    aggregate = str(originator_id)
    return {
        "specversion": "1.0",
        "id": f"{aggregate}:{version}",
        "source": f"oms/{kind}",
        "type": type_name,
        "time": body.get("timestamp"),
        "subject": aggregate,
        "datacontenttype": "application/json",
        "data": {
            **body,
            "aggregate_id": aggregate,
            "version": version,
            "position": notification_id,
        },
    }


def records_for(row: tuple[int, Any, int, str, bytes]) -> list[OutboundRecord]:
    """The CloudEvent (and any customer notification) for one stored event."""
    cloud_event = cloud_event_for(row)
    kind = cloud_event["source"].removeprefix("oms/")
    key = cloud_event["subject"].encode()
    records = [
        OutboundRecord(
            EVENT_TOPIC_BY_KIND.get(kind, UNKNOWN_EVENTS), key, orjson.dumps(cloud_event)
        )
    ]
    template = NOTIFY_TEMPLATES.get(cloud_event["type"])
    if template is not None:
        notice = {
            **cloud_event,
            "id": f"{cloud_event['id']}:notify",
            "type": f"notification.{template}",
            "data": {**cloud_event["data"], "template": template},
        }
        records.append(OutboundRecord(NOTIFICATIONS, key, orjson.dumps(notice)))
    return records


class Relay:
    def __init__(
        self,
        database_url: str,
        bootstrap: str,
        *,
        topic_specs: Mapping[str, TopicSpec],
        name: str = "relay",
        batch_size: int = 5000,
        epoch_check_s: float = 2.0,
        client: Client = "confluent",
        publisher_factory: Callable[[str], Publisher] | None = None,
        events_table: str = "oms_events",
    ) -> None:
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.topic_specs = dict(topic_specs)
        self.name = name
        self.batch_size = batch_size
        self.epoch_check_s = epoch_check_s
        self.client: Client = client
        self.publisher_factory = publisher_factory or (lambda b: publisher_for(client, b))
        self.events_table = events_table
        self.stats = RelayStats()
        self._producer: Publisher | None = None
        self._epoch: str | None = None
        self._last_epoch_check = 0.0
        self._marker_end: int | None = None
        self._watcher: Any = None
        self._db = psycopg.connect(database_url, autocommit=True)
        self._listener = psycopg.connect(database_url, autocommit=True)
        for statement in SCHEMA:
            self._db.execute(statement)
        self._listener.execute(f'LISTEN "{events_table}"')
        self.stats.position, self._epoch = self._load_position()

    # ------------------------------------------------------------ the loop
    def run(
        self, stop: threading.Event, on_batch: Callable[[RelayStats], None] | None = None
    ) -> None:
        while not stop.is_set():
            try:
                published = self.run_once()
            except (KafkaError, PublishError) as error:
                log.warning("broker trouble, recreating the producer: %r", error)
                self._reset_producer()
                stop.wait(0.5)
                continue
            if on_batch is not None and published:
                on_batch(self.stats)
            if published < self.batch_size:
                self._wait_for_new_events(stop, timeout=1.0)

    def run_once(self) -> int:
        """Publish the next batch and record the position; returns how many events went out.

        The broker is checked before every batch (and every ``epoch_check_s`` when idle):
        a batch published into a broker that lost its memory would advance our position
        past events the projections then never get.
        """
        rows = self._next_rows()
        now = time.monotonic()
        if rows or now - self._last_epoch_check >= self.epoch_check_s:
            self._last_epoch_check = now
            before = self.stats.position
            self._check_epoch()
            if self.stats.position != before:
                rows = self._next_rows()
        if not rows:
            return 0
        self._get_producer().publish([record for row in rows for record in records_for(row)])
        last = int(rows[-1][0])
        self._save_position(last)
        self.stats.position = last
        self.stats.published += len(rows)
        self.stats.batches += 1
        return len(rows)

    def _next_rows(self) -> list[tuple[Any, ...]]:
        return self._db.execute(
            f"SELECT notification_id, originator_id, originator_version, topic, state "
            f'FROM "{self.events_table}" WHERE notification_id > %s '
            "ORDER BY notification_id LIMIT %s",
            [self.stats.position, self.batch_size],
        ).fetchall()

    def _wait_for_new_events(self, stop: threading.Event, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # Short slices so a stop request is honoured quickly.
            for _ in self._listener.notifies(timeout=min(remaining, 0.2), stop_after=1):
                return

    # ------------------------------------------------------------ the broker's memory
    def _check_epoch(self) -> None:
        """Before every batch: is this still the broker our marker went to?

        One ListOffsets round trip: the marker topic's end offsets, summed over its
        partitions, must not be below what they were once our marker was acknowledged. A
        broker that came back empty has no such topic, or (created by some client's
        metadata request: Tansu auto-creates topics) an empty one; either way the sum
        drops, whatever raced to create it. Our own clients never auto-create topics.
        """
        end = self._epoch_end()
        if self._epoch is not None and end is not None:
            if self._marker_end is not None and end >= self._marker_end:
                return
            if self._marker_end is None and self._marker_present(self._epoch):
                self._marker_end = end  # a restarted relay, same broker
                return
        self._refill(end is not None)

    def _refill(self, epoch_topic_exists: bool) -> None:
        specs = dict(self.topic_specs)
        if epoch_topic_exists:
            # Maybe auto-created by someone else with another partition count: it is read
            # whole, so any count does, and provisioning would refuse it.
            specs.pop(RELAY_EPOCH, None)
        try:
            provision_topics(self.bootstrap, specs)
        except TopicProvisioningError as mismatch:
            # Every missing topic was created; some client auto-created the others first
            # (an outside publisher to an inbound topic, typically). Refusing to refill
            # would leave every projection without its events: go on, loudly.
            log.error("topics with another partition count than ours: %s", mismatch)
        if self._epoch is not None or self.stats.position > 0:
            rewind_to = self._lowest_consumer_position()
            log.warning(
                "the broker came back without our topics: republishing from position %d "
                "(was at %d)",
                rewind_to,
                self.stats.position,
            )
            self.stats.position = min(self.stats.position, rewind_to)
        epoch = uuid.uuid4().hex
        self._reset_producer()
        marker = {"epoch": epoch, "relay": self.name, "position": self.stats.position}
        self._get_producer().publish(
            [OutboundRecord(RELAY_EPOCH, self.name.encode(), orjson.dumps(marker))]
        )
        end = self._epoch_end()
        if end is None:
            raise PublishError("the epoch marker topic vanished as the marker was written")
        self._marker_end = end
        self._epoch = epoch
        self.stats.epochs.append(epoch)
        self._save_position(self.stats.position)

    def _epoch_end(self) -> int | None:
        """The marker topic's end offsets summed, or None if the broker has no such topic."""
        from confluent_kafka import KafkaException, TopicPartition

        watcher = self._get_watcher()
        try:
            metadata = watcher.list_topics(RELAY_EPOCH, timeout=5)
            topic = metadata.topics.get(RELAY_EPOCH)
            if topic is None or topic.error is not None or not topic.partitions:
                return None
            return int(
                sum(
                    watcher.get_watermark_offsets(TopicPartition(RELAY_EPOCH, p), timeout=5)[1]
                    for p in topic.partitions
                )
            )
        except KafkaException as error:
            raise PublishError(f"could not read the epoch marker topic: {error}") from error

    def _marker_present(self, epoch: str) -> bool:
        """Whether the marker topic holds our epoch's marker (read whole: it is tiny)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        watcher = self._get_watcher()
        topic = watcher.list_topics(RELAY_EPOCH, timeout=5).topics[RELAY_EPOCH]
        ends = {
            p: watcher.get_watermark_offsets(TopicPartition(RELAY_EPOCH, p), timeout=5)[1]
            for p in topic.partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        watcher.assign([TopicPartition(RELAY_EPOCH, p, OFFSET_BEGINNING) for p in pending])
        found = False
        deadline = time.monotonic() + 10
        try:
            while pending and not found and time.monotonic() < deadline:
                message = watcher.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    found = orjson.loads(message.value()).get("epoch") == epoch
                if message.offset() + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
        finally:
            watcher.unassign()
        return found

    def _get_watcher(self) -> Any:
        if self._watcher is None:
            from confluent_kafka import Consumer

            self._watcher = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"oms-relay-epoch-{self.name}",
                    "enable.auto.commit": False,
                    "allow.auto.create.topics": False,
                    # A restarted broker is reconnected to within a second, not up to 10 s.
                    "reconnect.backoff.ms": 50,
                    "reconnect.backoff.max.ms": 500,
                    "socket.connection.setup.timeout.ms": 10000,
                    "topic.metadata.refresh.interval.ms": 1000,
                }
            )
        return self._watcher

    def _lowest_consumer_position(self) -> int:
        row = self._db.execute("SELECT min(notification_id) FROM oms_consumer_positions").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # ------------------------------------------------------------ state
    def _load_position(self) -> tuple[int, str | None]:
        row = self._db.execute(
            "SELECT notification_id, epoch FROM oms_relay_positions WHERE name = %s", [self.name]
        ).fetchone()
        if row is None:
            return 0, None
        return int(row[0]), row[1]

    def _save_position(self, position: int) -> None:
        self._db.execute(
            "INSERT INTO oms_relay_positions (name, notification_id, epoch) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET notification_id = EXCLUDED.notification_id,"
            " epoch = EXCLUDED.epoch, updated_at = now()",
            [self.name, position, self._epoch],
        )

    def _get_producer(self) -> Publisher:
        if self._producer is None:
            self._producer = self.publisher_factory(self.bootstrap)
        return self._producer

    def _reset_producer(self) -> None:
        # An idempotent producer that lived through a broker restart fails for good
        # (InitProducerId): a new one starts a new producer id.
        if self._producer is not None:
            try:
                self._producer.close()
            except Exception:
                log.debug("closing a broken producer failed", exc_info=True)
            self._producer = None

    def close(self) -> None:
        self._reset_producer()
        if self._watcher is not None:
            self._watcher.close()
        self._db.close()
        self._listener.close()


def lag(database_url: str, name: str = "relay") -> dict[str, int]:
    """Events stored but not yet relayed, measured on our own positions (not the broker's)."""
    with psycopg.connect(database_url) as conn:
        head_row = conn.execute(
            "SELECT coalesce(max(notification_id), 0) FROM oms_events"
        ).fetchone()
        pos_row = conn.execute(
            "SELECT notification_id FROM oms_relay_positions WHERE name = %s", [name]
        ).fetchone()
    head = int(head_row[0]) if head_row else 0
    position = int(pos_row[0]) if pos_row else 0
    return {"head": head, "relayed": position, "lag": head - position}
