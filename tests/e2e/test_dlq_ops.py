"""An operator replays dead letters by filter against the running system, twice."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from adapters.driven.kafka.topics import ORDERS
from adapters.driving.cli import main
from tests.e2e.builders import System, eventually, publish
from tests.integration import builders as m

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_fulfilments_before_their_orders_replayed_by_code_twice_apply_once(
    system: System, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OMS_KAFKA_BOOTSTRAP", system.bootstrap)

    def rma(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        return code, capsys.readouterr().out

    # A second of margin: the DLQ records are stamped by the worker's clock, ours is the same.
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    orders = [f"EARLY-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    # Shipped (one of two items each) before the platform published the orders: refused
    # as not_found, dead-lettered. A broken message in the same window is dead-lettered too.
    for order_id in orders:
        publish(
            system.bootstrap,
            ORDERS,
            [m.order_fulfilled(order_id, quantity=1)],
            key=order_id.encode(),
        )
    publish(system.bootstrap, ORDERS, [b"{not json"], key=orders[0].encode())

    def counted() -> dict[str, int]:
        _, out = rma("dlq", "list", ORDERS, "--since", since, "--count", "--json")
        return dict(json.loads(out)["by_code"])

    eventually(
        lambda: counted() == {"not_found": 3, "invalid_json": 1}, what="the four dead letters"
    )
    code, out = rma("dlq", "list", ORDERS, "--since", since, "--code", "not_found", "--json")
    listed = json.loads(out)["dead_letters"]
    assert sorted(d["key"] for d in listed) == sorted(orders)
    assert {d["type"] for d in listed} == {"order.fulfilled"}

    for order_id in orders:
        publish(
            system.bootstrap, ORDERS, [m.order_placed(order_id, quantity=2)], key=order_id.encode()
        )
    for order_id in orders:
        eventually(lambda o=order_id: _version(system, o) == 1, what=f"{order_id} placed")

    code, out = rma("dlq", "replay", ORDERS, "--code", "not_found", "--since", since, "--dry-run")
    assert code == 0 and "dry run: would replay 3, skip 0" in out
    for attempt in range(2):
        code, out = rma("dlq", "replay", ORDERS, "--code", "not_found", "--since", since)
        assert code == 0, out
        assert f"replayed 3 of 3 (3 to {ORDERS}); skipped 0" in out
        if attempt == 0:
            for order_id in orders:
                eventually(lambda o=order_id: _fulfilled(system, o) == 1, what="the fulfilment")
    # Delivered after the second replay, on the same key (so the same partition, behind it):
    # once an order is delivered, the worker has handled the second replay of its fulfilment.
    for order_id in orders:
        publish(system.bootstrap, ORDERS, [m.order_delivered(order_id)], key=order_id.encode())
    for order_id in orders:
        eventually(lambda o=order_id: _delivered(system, o), what=f"{order_id} delivered")
        # Not 2: the second replay changed nothing (placed, fulfilled, delivered).
        assert _fulfilled(system, order_id) == 1
        assert _version(system, order_id) == 3
    # Nothing replayed was refused again: the DLQ holds the same four as before.
    assert counted() == {"not_found": 3, "invalid_json": 1}


def _version(system: System, order_id: str) -> int:
    try:
        return int(system.service.get_order(order_id).version)
    except Exception:
        return 0


def _delivered(system: System, order_id: str) -> bool:
    return system.service.order_view(order_id)["delivered_at"] is not None


def _fulfilled(system: System, order_id: str) -> int:
    return int(system.service.order_view(order_id)["lines"][0]["fulfilled"])


def test_the_original_bytes_are_what_is_listed(
    system: System, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMS_KAFKA_BOOTSTRAP", system.bootstrap)
    event_id = str(uuid.uuid4())
    value = m.cloud_event(
        "order.teleported", {"order_id": "X"}, source="commerce/web", event_id=event_id
    )
    publish(system.bootstrap, ORDERS, [value])

    def listed() -> list[dict[str, object]]:
        main(["dlq", "list", ORDERS, "--id", event_id, "--json"])
        return list(json.loads(capsys.readouterr().out)["dead_letters"])

    [letter] = eventually(listed, what="the dead letter")
    assert letter["code"] == "unknown_type"
    assert orjson.loads(str(letter["value"])) == orjson.loads(value)
    original = letter["original"]
    assert isinstance(original, dict) and original["topic"] == ORDERS
    assert isinstance(original["offset"], int)
