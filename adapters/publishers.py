"""Moved to ``adapters.driven.kafka.publishers``.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driven.kafka.publishers import (
    Client,
    ConfluentPublisher,
    KafkaPythonPublisher,
    Publisher,
    PublishError,
    Record,
    default_producer,
    publisher_for,
)

__all__ = [
    "Client",
    "ConfluentPublisher",
    "KafkaPythonPublisher",
    "PublishError",
    "Publisher",
    "Record",
    "default_producer",
    "publisher_for",
]
