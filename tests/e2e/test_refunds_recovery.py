"""The embedded broker dies and comes back empty while refunds are in flight: every refund
still ends settled or failed, none stays pending (issue 9, refunds).

A stack of its own (database, Tansu, relay, integrations worker) so the broker can be
restarted without disturbing the session's system.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.eventstore import create_service
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.topics import topic_specs
from adapters.driven.relay import Relay, lag
from domain.application import ReturnsService
from streams.worker import WorkerProcess
from tests.e2e.builders import eventually
from tests.integration.builders import fresh_database, requested_refunds

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2


@dataclass
class Stack:
    database_url: str
    broker: EmbeddedKafka
    service: ReturnsService
    relay: Relay
    workdir: Path

    def integrations(self) -> WorkerProcess:
        workdir = self.workdir / "integrations"
        return WorkerProcess(
            "streams.integrations:app_from_env",
            workdir=workdir,
            env={
                **os.environ,
                "OMS_DATABASE_URL": self.database_url,
                "OMS_KAFKA_BOOTSTRAP": self.broker.bootstrap,
                "OMS_DATA_DIR": str(workdir),
                "OMS_TOPIC_PARTITIONS": str(PARTITIONS),
                # Short, so the re-send of what the broker lost comes within the test.
                "OMS_REFUND_RESEND_AFTER_S": "4",
                # Long enough that settlements are still on their way when the broker dies.
                "OMS_SANDBOX_SETTLEMENT_DELAY_S": "3",
            },
            cwd=ROOT,
        )


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    url = fresh_database(database_url, "refunds_e2e")
    broker = EmbeddedKafka(tmp_path / "tansu").start()
    provision_topics(broker.bootstrap, topic_specs(PARTITIONS))
    service = create_service(url, pool_size=2)
    relay = Relay(
        url,
        broker.bootstrap,
        topic_specs=topic_specs(PARTITIONS),
        name="refunds",
        epoch_check_s=0.2,
    )
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield Stack(url, broker, service, relay, tmp_path)
    finally:
        stop.set()
        thread.join(20)
        relay.close()
        service.close()
        broker.stop()


def statuses(stack: Stack, refund_ids: list[str]) -> dict[str, str]:
    """Each refund's status on its RMA, the event store's word."""
    found = {}
    for refund_id in refund_ids:
        return_id = stack.service.lookups.return_id_for_refund(refund_id)
        assert return_id is not None
        found[refund_id] = stack.service.get_return(return_id).state.refunds[refund_id].status
    return found


def answered(stack: Stack, refund_ids: list[str]) -> bool:
    return all(s in ("settled", "failed") for s in statuses(stack, refund_ids).values())


def test_refunds_in_flight_when_the_broker_restarts_empty_are_all_settled_or_failed(
    stack: Stack,
) -> None:
    with stack.integrations() as worker:
        worker.wait_ready(timeout=90)
        before = requested_refunds(stack.service, 10)
        eventually(lambda: answered(stack, before), timeout=120, what="the first refunds")

        in_flight = requested_refunds(stack.service, 30)
        # Relayed, so handed to the sandbox within milliseconds; it answers after 3 s.
        eventually(
            lambda: lag(stack.database_url, "refunds")["lag"] == 0,
            timeout=30,
            what="the relay to publish the refunds",
        )
        assert not answered(stack, in_flight), "no refund left in flight to test with"
        stack.broker.restart()  # memory storage: every topic, record and offset is gone
        after = requested_refunds(stack.service, 10)

        everything = before + in_flight + after
        eventually(
            lambda: answered(stack, everything),
            timeout=240,
            what="every refund to be settled or failed after the broker restart",
        )
        log = worker.log_tail(10**7)

    found = statuses(stack, everything)
    assert [r for r, status in found.items() if status == "requested"] == []
    assert sum(1 for status in found.values() if status == "settled") > 0
    # What the broker lost came back through the re-send, which the worker says it did.
    assert "sending it again" in log or "retrying with a new producer" in log
