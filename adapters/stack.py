"""Where the servers are: the configured ones, or the embedded ones started on demand."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from adapters.embedded import EmbeddedKafka, EmbeddedPostgres
from adapters.settings import Settings

log = logging.getLogger(__name__)


@contextmanager
def postgres(settings: Settings) -> Iterator[str]:
    """Yield a PostgreSQL URL; an embedded server started here is stopped on the way out."""
    if settings.database_url:
        yield settings.database_url
        return
    settings.postgres_dir.parent.mkdir(parents=True, exist_ok=True)
    with EmbeddedPostgres(settings.postgres_dir) as server:
        log.info("embedded PostgreSQL at %s (data in %s)", server.url, settings.postgres_dir)
        yield server.url


@contextmanager
def kafka(settings: Settings) -> Iterator[str]:
    """Yield Kafka bootstrap servers; an embedded Tansu started here is stopped on the way out."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    settings.kafka_dir.parent.mkdir(parents=True, exist_ok=True)
    with EmbeddedKafka(settings.kafka_dir) as broker:
        log.info("embedded Tansu broker at %s", broker.bootstrap)
        log.warning(
            "the embedded Tansu broker keeps everything in memory: inbound messages it "
            "acknowledged but the workers had not yet stored are lost if it stops, and their "
            "publishers must send them again (the event store loses nothing it stored). "
            "Set OMS_KAFKA_BOOTSTRAP to a durable Kafka for anything but development."
        )
        yield broker.bootstrap
