"""A provider's settlement file read: columns in any order, optional payment and status,
and every malformed line named with its number and reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.driven.reconciliation import SettlementFileError, parse_settlement_file
from tests.unit.builders import eur

HEADER = "provider_reference,refund_id,payment_id,amount,currency,settled_at,status\r\n"


def test_a_file_is_read_line_by_line_whatever_the_column_order() -> None:
    lines = parse_settlement_file(
        "\ufeffamount,currency,refund_id,settled_at,provider_reference\n"
        "59.90,EUR,RF-1,2026-12-04T10:00:00+01:00,PSP-1\n"
        "\n"
        "12.345,KWD,RF-2,2026-12-04,PSP-2\n"
    )
    assert [(ln.line, ln.refund_id, ln.amount, ln.payment_id, ln.status) for ln in lines] == [
        (2, "RF-1", eur("59.90"), None, "settled"),
        (4, "RF-2", lines[1].amount, None, "settled"),
    ]
    assert str(lines[1].amount.amount) == "12.345"
    assert lines[0].settled_at == datetime(2026, 12, 4, 9, tzinfo=UTC)
    assert lines[1].settled_at == datetime(2026, 12, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "empty"),
        ("refund_id,amount\n", 1, "lacks provider_reference, currency, settled_at"),
        (HEADER.replace("status", "colour"), 1, "unknown or repeated columns: colour"),
        (HEADER + "P,RF-1,,1.00,EUR,2026-12-04\n", 2, "6 fields, the header has 7"),
        (HEADER + "P,RF-1,,1.2.3,EUR,2026-12-04,\n", 2, "amount"),
        (HEADER + "P,RF-1,,NaN,EUR,2026-12-04,\n", 2, "amount"),
        (HEADER + "P,RF-1,,1.001,EUR,2026-12-04,\n", 2, "amount"),
        (HEADER + "P,RF-1,,1.00,EUR,2026-12-04T10:00:00,\n", 2, "needs its offset"),
        (HEADER + "P,RF-1,,1.00,EUR,yesterday,\n", 2, "settled_at"),
        (HEADER + "P,RF-1,,1.00,EUR,2026-12-04,refunded\n", 2, "status 'refunded'"),
        (HEADER + "P,,,1.00,EUR,2026-12-04,\n", 2, "refund_id is empty"),
        (
            HEADER + "P,RF-1,,1.00,EUR,2026-12-04,\nQ,RF-2,,1.00,EUR,2026-12-04,\n"
            "P,RF-1,,2.00,EUR,2026-12-04,\n",
            4,
            "the same settlement as line 2",
        ),
    ],
)
def test_a_malformed_file_names_its_line_and_why(text: str, line: int, reason: str) -> None:
    with pytest.raises(SettlementFileError) as refused:
        parse_settlement_file(text)
    assert refused.value.line == line
    assert reason in refused.value.reason
