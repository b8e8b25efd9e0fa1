"""Outside systems publish to our topics exactly as they would; we watch the outbound ones."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from adapters.driven.kafka.topics import ORDERS, PSP_REFUNDS, WMS_RECEIPTS, dlq
from domain.values import ReasonCode
from tests.e2e.builders import (
    System,
    delivered_web_order,
    eventually,
    publish,
    read_topic,
    rma_events,
    rma_events_eventually,
)
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_a_portal_rma_is_received_inspected_and_refunded_through_the_topics(
    system: System,
) -> None:
    order_id = delivered_web_order(system)
    rma = m.authorized_return(system.service, order_id)
    assert rma.rma_number
    receipt = f"REC-{order_id}"
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [m.parcel_received(receipt, rma.rma_number)],
        key=receipt.encode(),
    )
    publish(
        system.bootstrap,
        WMS_RECEIPTS,
        [m.items_inspected(receipt, rma.rma_number)],
        key=receipt.encode(),
    )
    # The sandbox provider settles (or declines) the refund on psp.refunds.v1 by itself.
    final = eventually(
        lambda: (
            system.service.get_return(rma.aggregate_id).state.status.value
            in {"closed", "refund_failed"}
            and system.service.get_return(rma.aggregate_id)
        ),
        what="the refund to be settled by the sandbox",
    )
    types = eventually(
        lambda: (
            (t := rma_events(system, rma.aggregate_id))
            and t[-1] in {"rma.closed", "rma.refund_failed"}
            and t
        ),
        what="the outbound events",
    )
    assert types[:5] == [
        "rma.requested",
        "rma.authorized",
        "rma.parcel_received",
        "rma.items_inspected",
        "rma.refund_requested",
    ]
    if final.state.status.value == "closed":
        # The sandbox settles each payment of the refund; the order has one.
        assert types[5:] == ["rma.refund_payment_settled", "rma.refund_settled", "rma.closed"]
    else:
        assert types[5:] == ["rma.refund_failed"]
    settlements = [orjson.loads(r.value) for r in read_topic(system.bootstrap, PSP_REFUNDS)]
    assert any(s["data"]["refund_id"] in final.state.refunds for s in settlements)


def test_a_parcel_with_no_rma_becomes_a_blind_return(system: System) -> None:
    receipt = f"BLIND-{uuid.uuid4().hex[:8]}"
    publish(system.bootstrap, WMS_RECEIPTS, [m.parcel_received(receipt, None)])
    blind_ids = eventually(
        lambda: [
            r.id
            for r in system.service.open_blind_returns(limit=1000)
            if r.state.blind_receipt_id == receipt
        ],
        what="the blind return",
    )
    assert rma_events_eventually(system, blind_ids[0]) == ["rma.blind_return_detected"]


def test_the_same_receipt_published_five_times_has_one_effect(system: System) -> None:
    order_id = delivered_web_order(system)
    rma = m.authorized_return(system.service, order_id, reason=ReasonCode.CHANGED_MIND)
    assert rma.rma_number
    receipt = m.parcel_received(f"REC5-{order_id}", rma.rma_number, event_id=f"wms-{order_id}")
    key = f"REC5-{order_id}".encode()
    publish(system.bootstrap, WMS_RECEIPTS, [receipt] * 5, key=key)
    # One key, one partition: once a later message on it is applied, all five copies were.
    sentinel = f"REC5-{order_id}-S"
    publish(system.bootstrap, WMS_RECEIPTS, [m.stock_counted(sentinel, 1)], key=key)
    eventually(lambda: _stock_counted(system, sentinel), what="the message behind the copies")
    assert system.service.get_return(rma.aggregate_id).state.receipts
    assert system.service.get_return(rma.aggregate_id).version == 3
    assert (
        eventually(
            lambda: (
                len(rma_events(system, rma.aggregate_id)) == 3
                and rma_events(system, rma.aggregate_id)
            )
        )[-1]
        == "rma.parcel_received"
    )


def test_a_thousand_malformed_messages_go_to_the_dlq_and_valid_ones_around_them_pass(
    system: System,
) -> None:
    run = uuid.uuid4().hex[:6]
    values: list[bytes] = []
    valid: list[str] = []
    for index in range(1000):
        kind = index % 4
        if kind == 0:
            values.append(b"{broken json " + str(index).encode())
        elif kind == 1:
            values.append(
                m.cloud_event("order.placed", {"order_id": f"X-{index}"}, source="commerce/web")
            )
        elif kind == 2:
            values.append(m.cloud_event("order.teleported", {}, source="commerce/web"))
        else:
            values.append(orjson.dumps({"specversion": "1.0", "id": str(index)}))
        if index % 100 == 0:
            order_id = f"OK-{run}-{index}"
            valid.append(order_id)
            values.append(m.order_placed(order_id))
    publish(system.bootstrap, ORDERS, values)
    sent = set(values)  # every value is unique (ids and indices differ)

    def ours() -> list[Any]:
        # Earlier tests' dead letters may still be arriving on a loaded machine: count
        # only this test's messages, by their bytes.
        return [d for d in read_topic(system.bootstrap, dlq(ORDERS)) if d.value in sent]

    eventually(lambda: len(ours()) >= 1000, timeout=240, what="1000 dead letters")
    dead = ours()
    assert len(dead) == 1000
    valid_values = {v for v in values if any(o.encode() in v for o in valid)}
    assert not valid_values & {d.value for d in dead}, "a valid message was dead-lettered"
    headers = dict(dead[0].headers)
    assert headers["x-original-topic"] == ORDERS.encode()
    assert headers["x-dlq-error-code"] in {
        b"invalid_json",
        b"invalid_data",
        b"unknown_type",
        b"invalid_envelope",
    }
    for order_id in valid:
        eventually(lambda o=order_id: _exists(system, o), what=order_id)


def _exists(system: System, order_id: str) -> bool:
    try:
        system.service.order_view(order_id)
        return True
    except Exception:
        return False


def _stock_counted(system: System, sku: str) -> bool:
    from domain.inventory import inventory_id_for

    return bool(list(system.service.events.get(inventory_id_for(sku, "WH-1"))))


def test_a_dead_letter_replayed_after_the_fix_is_processed_once(system: System) -> None:
    from adapters.driven.kafka.deadletters.reading import list_dead_letters
    from adapters.driven.kafka.deadletters.replay import replay_dead_letter

    order_id = f"LATE-{uuid.uuid4().hex[:8]}"
    # Shipped before the platform published the order: refused, dead-lettered.
    publish(
        system.bootstrap, ORDERS, [m.order_fulfilled(order_id, quantity=2)], key=order_id.encode()
    )
    letter = eventually(
        lambda: next(
            (
                d
                for d in list_dead_letters(system.bootstrap, ORDERS, limit=10_000)
                if order_id in d["value"]
            ),
            None,
        ),
        what="the dead letter",
    )
    assert letter["code"] == "not_found"
    publish(system.bootstrap, ORDERS, [m.order_placed(order_id)], key=order_id.encode())
    eventually(lambda: _exists(system, order_id), what="the order")
    for _ in range(2):  # replaying twice changes nothing twice
        replay_dead_letter(system.bootstrap, ORDERS, letter["partition"], letter["offset"])
    eventually(
        lambda: system.service.order_view(order_id)["lines"][0]["fulfilled"] == 2,
        what="the replayed fulfilment",
    )
    # Replays keep the original key, so they share a partition with this later message:
    # once it is applied, both replays were.
    sentinel = f"{order_id}-S"
    publish(system.bootstrap, ORDERS, [m.order_placed(sentinel)], key=order_id.encode())
    eventually(lambda: _exists(system, sentinel), what="the message behind the replays")
    assert system.service.order_view(order_id)["lines"][0]["fulfilled"] == 2


def test_the_api_metrics_count_dead_letters_by_topic_and_code(system: System) -> None:
    """Operators alert on ``oms_dead_letters_total``: it follows the DLQ topics live."""
    from fastapi.testclient import TestClient

    from adapters.driven.kafka.deadletters.reading import count_by_code
    from adapters.driving.api.app import create_api
    from adapters.driving.api.auth import KeyRing
    from adapters.driving.api.settings import ApiSettings

    def dead_letters_metric(client: TestClient, code: str) -> float:
        prefix = f'oms_dead_letters_total{{code="{code}",topic="{ORDERS}"}} '
        for line in client.get("/metrics").text.splitlines():
            if line.startswith(prefix):
                return float(line.removeprefix(prefix))
        return 0.0

    api = create_api(
        system.service,
        system.database_url,
        ApiSettings(metrics_public=True),
        keys=KeyRing.with_keys({}),
        kafka_bootstrap=system.bootstrap,
    )
    with TestClient(api) as client:
        eventually(
            lambda: client.app.state.api.metrics.dead_letters.following.is_set(),  # type: ignore[attr-defined]
            what="the tally to follow the DLQ topics",
        )
        # What the DLQ already holds from earlier tests is counted too, as the topic holds it.
        eventually(
            lambda: (
                dead_letters_metric(client, "invalid_json")
                == count_by_code(system.bootstrap, [ORDERS]).get("invalid_json", 0)
            ),
            what="the tally to catch up with the DLQ",
        )
        before = dead_letters_metric(client, "invalid_json")
        publish(system.bootstrap, ORDERS, [b"{not json", b"\xff\xfe", b"[1, 2"])
        eventually(
            lambda: dead_letters_metric(client, "invalid_json") == before + 3,
            what="three more invalid_json dead letters on /metrics",
        )
