"""The policy as operators' data: the TOML file read into a PolicyBook, its errors, its
version recorded on every decision, and refusals said in words and dates."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from domain.events import ReturnRejected
from domain.policy_file import PolicyFileError, content_version, describe_policy, parse_policy
from domain.values import Channel, ReasonCode
from tests.unit.builders import day, decide, given, last, requested_return, shop_order, wants

EXAMPLE = Path(__file__).resolve().parents[2] / "policy.example.toml"


def test_the_example_file_states_the_built_in_policy_under_its_version() -> None:
    book = parse_policy(EXAMPLE.read_text(), str(EXAMPLE))
    assert book.version == "2026-12-example"
    assert book.default.window_days == 30
    assert book.default.restocking_fee_rate == Decimal("0.10")
    assert not book.policy_for("software", Channel.WEB).returnable
    assert book.policy_for("shoes", Channel.WEB).returnable
    # Stating two currencies' thresholds keeps the built-in ones of the others.
    assert book.default.review_thresholds["JPY"] == Decimal("170000")
    assert book.default.review_thresholds["USD"] == Decimal("1100")


def test_overrides_per_channel_and_category_apply_and_carry_the_version() -> None:
    book = parse_policy(
        'version = "v7"\n[default]\nwindow_days = 20\nrestocking_fee_rate = 0.15\n'
        "[channel.store]\nwindow_days = 10\n[category.shoes]\nwindow_days = 60\n"
    )
    assert book.default.restocking_fee_rate == Decimal("0.15")  # the float as written
    assert book.policy_for("toys", Channel.WEB).window_days == 20
    assert book.policy_for("toys", Channel.STORE).window_days == 10
    assert book.policy_for("shoes", Channel.STORE).window_days == 60
    assert {book.policy_for(c, ch).version for c in ("toys", "shoes") for ch in Channel} == {"v7"}
    assert describe_policy(book)["channel"] == {"store": {"window_days": 10}}


def test_without_a_version_the_content_hash_is_the_version() -> None:
    text = "[default]\nwindow_days = 21\n"
    assert parse_policy(text).version == content_version(text)
    assert content_version(text) != content_version(text + "# edited\n")


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[default]\nwindow_dayz = 3\n", "default.window_dayz", "unknown policy setting"),
        ("[default]\nwindow_days = -1\n", "default.window_days", "greater than or equal"),
        ('[default]\nrestocking_fee_rate = "ten"\n', "default.restocking_fee_rate", "decimal"),
        ("[channel.telepathy]\nwindow_days = 3\n", "channel.telepathy", "unknown channel"),
        ("[category.toys]\nreturnable = 3\n", "category.toys.returnable", "boolean"),
        ("[rules]\nx = 1\n", "rules", "unknown section"),
        ("version = 3\n", "version", "non-empty string"),
        ("[default\n", "(syntax)", "Expected"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_the_key_and_the_reason(
    text: str, key: str, reason: str
) -> None:
    with pytest.raises(PolicyFileError) as raised:
        parse_policy(text, "/etc/oms/policy.toml")
    assert (raised.value.source, raised.value.key) == ("/etc/oms/policy.toml", key)
    assert reason.lower() in raised.value.reason.lower()
    assert str(raised.value).startswith(f"/etc/oms/policy.toml: {key}: ")


def test_every_decision_records_the_version_of_the_policy_that_made_it() -> None:
    order = shop_order()
    rma = given(requested_return(order, at=day(10)))
    decide(rma, order, at=day(10), book=parse_policy('version = "v9"\n'))
    assert [d.policy_version for d in last(rma).decisions] == ["v9"]


def test_the_built_in_defaults_record_no_version() -> None:
    order = shop_order()
    rma = given(requested_return(order, at=day(10)))
    decide(rma, order, at=day(10))
    assert [d.policy_version for d in last(rma).decisions] == [None]


def test_a_late_return_is_refused_with_the_day_the_window_closed() -> None:
    order = shop_order()  # delivered on day 2: 2025-03-05
    rma = given(requested_return(order, at=day(40)))
    decide(rma, order, at=day(40), book=parse_policy("[default]\nwindow_days = 14\n"))
    event = last(rma)
    assert isinstance(event, ReturnRejected)
    assert event.reason == "line 1: returns close 14 days after delivery: on 2025-03-19"


def test_an_expired_warranty_is_said_as_such_with_its_end_date() -> None:
    order = shop_order()
    late = day(2 + 800)  # 24 months after 2025-03-05 is 2027-03-05
    rma = given(requested_return(order, wants(1, 1, ReasonCode.DEFECTIVE, "SN-1"), at=late))
    decide(rma, order, at=late)
    event = last(rma)
    assert isinstance(event, ReturnRejected)
    assert event.reason == (
        "line 1: returns close 30 days after delivery: on 2025-04-04; "
        "its 24-month warranty ended on 2027-03-05"
    )


def test_a_defect_claimed_without_a_serial_is_told_the_warranty_needs_it() -> None:
    order = shop_order()
    rma = given(requested_return(order, wants(2, 1, ReasonCode.DEFECTIVE), at=day(60)))
    decide(rma, order, at=day(60))
    assert last(rma).reason.endswith("a warranty claim needs the item's serial number")


def test_rma_policy_checks_a_candidate_and_shows_the_policy_in_force(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.driving.cli import main

    assert main(["policy", "check", str(EXAMPLE)]) == 0
    assert "valid, version 2026-12-example" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[category.toys]\nwindow_days = 1.5\n")
    assert main(["policy", "check", str(bad)]) == 1
    assert f"{bad}: category.toys.window_days: " in capsys.readouterr().err
    monkeypatch.setenv("OMS_POLICY_FILE", str(EXAMPLE))
    assert main(["policy", "show"]) == 0
    shown = capsys.readouterr().out
    assert '"version": "2026-12-example"' in shown and '"returnable": false' in shown


def test_a_simulated_policy_reports_fees_and_decisions_it_would_change() -> None:
    from domain.policy_simulation import SimulationReport

    order = shop_order()  # delivered on day 2; a change of mind on day 20 bears the fee
    rma = given(requested_return(order, wants(1, 1), at=day(20)))
    decide(rma, order, at=day(20))
    recorded = last(rma).decisions
    lines = tuple(rma.state.lines.values())
    report = SimulationReport()
    dearer = parse_policy('[default]\nrestocking_fee_rate = "0.25"\n')
    report.add("r1", order, lines, recorded, dearer, day(20))
    tally = report.as_json()["by_category"]["general"]
    assert (tally["accepted_before"], tally["accepted_after"]) == (1, 1)
    assert (tally["fees_before"], tally["fees_after"]) == ({"EUR": "4.00"}, {"EUR": "10.00"})
    assert [(c.before, c.after, c.fee_after) for c in report.changes] == [
        ("accepted", "accepted", "10.00")
    ]
