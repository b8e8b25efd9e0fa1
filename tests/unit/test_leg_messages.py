"""The warehouse's leg messages on wms.receipts.v1 and the one command each asks for."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from adapters.contracts import ContractError, parse_inbound
from domain.commands import LegAction, MoveLeg
from domain.values import Money
from streams.inbound import to_command

RMA = {"rma_number": "RMA-7K2Q-M4XD"}


def envelope(event_type: str, data: object) -> bytes:
    return orjson.dumps(
        {"specversion": "1.0", "id": "e-1", "source": "wms/WH-1", "type": event_type, "data": data}
    )


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    [
        (
            "repair.sent",
            {**RMA, "leg_id": "L1", "repair_center": "REPAIR-LYON", "reference": "JOB-1"},
            MoveLeg(
                rma_number="RMA-7K2Q-M4XD",
                action=LegAction.SENT_TO_REPAIR,
                leg_id="L1",
                repair_center="REPAIR-LYON",
                reference="JOB-1",
            ),
        ),
        (
            "repair.completed",
            {**RMA, "serial": "SN-1", "outcome": "replaced", "replacement_serial": "SN-2"},
            MoveLeg(
                rma_number="RMA-7K2Q-M4XD",
                action=LegAction.REPLACED,
                serial="SN-1",
                replacement_serial="SN-2",
            ),
        ),
        (
            "repair.completed",
            {**RMA, "sku": "SKU-1", "outcome": "unrepairable"},
            MoveLeg(rma_number="RMA-7K2Q-M4XD", action=LegAction.UNREPAIRABLE, sku="SKU-1"),
        ),
        (
            "leg.restocked",
            {**RMA, "leg_id": "L2", "location_id": "WH-2"},
            MoveLeg(
                rma_number="RMA-7K2Q-M4XD",
                action=LegAction.RESTOCKED,
                leg_id="L2",
                location_id="WH-2",
            ),
        ),
        (
            "vendor.shipped",
            {**RMA, "leg_id": "L1", "reference": "V-RMA-9"},
            MoveLeg(
                rma_number="RMA-7K2Q-M4XD",
                action=LegAction.SHIPPED_TO_VENDOR,
                leg_id="L1",
                reference="V-RMA-9",
            ),
        ),
        (
            "vendor.credited",
            {**RMA, "leg_id": "L1", "amount": {"amount": "12.50", "currency": "EUR"}},
            MoveLeg(
                rma_number="RMA-7K2Q-M4XD",
                action=LegAction.CREDITED,
                leg_id="L1",
                amount=Money.of("12.50", "EUR"),
            ),
        ),
    ],
)
def test_each_leg_message_asks_for_one_leg_move(
    event_type: str, data: dict[str, Any], expected: MoveLeg
) -> None:
    message = parse_inbound("wms.receipts.v1", envelope(event_type, data))
    assert to_command(message) == expected


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("repair.completed", {**RMA, "leg_id": "L1", "outcome": "lost"}),
        ("vendor.credited", {**RMA, "leg_id": "L1", "amount": 12.5}),
        ("leg.restocked", {"leg_id": "L1", "location_id": "WH-2"}),
    ],
)
def test_a_leg_message_breaking_its_schema_is_refused_as_invalid_data(
    event_type: str, data: dict[str, Any]
) -> None:
    with pytest.raises(ContractError) as refused:
        parse_inbound("wms.receipts.v1", envelope(event_type, data))
    assert refused.value.code == "invalid_data"
