"""Stores events as orjson-encoded pydantic models under their stable wire type name."""

from __future__ import annotations

from typing import Any, cast

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder

from domain.events import EVENT_TYPES, DomainEvent


class OrjsonTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


def event_to_json(event: DomainEvent) -> dict[str, Any]:
    """The event's body without the envelope fields the event store keeps in columns."""
    return event.model_dump(mode="json", exclude={"originator_id", "originator_version"})


def event_from_json(type_name: str, originator_id: Any, version: int, body: Any) -> DomainEvent:
    try:
        event_class = EVENT_TYPES[type_name]
    except KeyError:
        raise LookupError(f"unknown event type {type_name!r}") from None
    return event_class.model_validate(
        {**body, "originator_id": originator_id, "originator_version": version}
    )


class PydanticMapper(Mapper[Any]):
    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        event = cast(DomainEvent, domain_event)
        state = self.transcoder.encode(event_to_json(event))
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=event.type_name,
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        state = stored_event.state
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        body = self.transcoder.decode(state)
        event = event_from_json(
            stored_event.topic, stored_event.originator_id, stored_event.originator_version, body
        )
        return cast(DomainEventProtocol[Any], event)
