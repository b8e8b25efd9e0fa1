"""``rma policy simulate`` on the real event store: recorded requests replayed against a
candidate policy, reported by category, and nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.driven.eventstore import create_service
from adapters.driven.policy_simulation import simulate
from domain.application import ReturnsService
from domain.policy_file import parse_policy
from tests.integration.builders import authorized_return, delivered_order, fresh_database

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "policy.example.toml").read_text()


@pytest.fixture
def own_url(database_url: str) -> str:
    return fresh_database(database_url, "simulate")


@pytest.fixture
def own_service(own_url: str) -> Iterator[ReturnsService]:
    service = create_service(own_url, pool_size=2)
    yield service
    service.close()


def last_notification_id(service: ReturnsService) -> int | None:
    return service.recorder.max_notification_id()  # type: ignore[attr-defined, no-any-return]


def test_a_candidate_policy_is_compared_with_the_recorded_decisions_writing_nothing(
    own_service: ReturnsService,
) -> None:
    service = own_service
    for _ in range(2):
        authorized_return(service, delivered_order(service, category="shoes"))
    authorized_return(service, delivered_order(service, category="toys"))
    written = last_notification_id(service)
    closed_shoes = parse_policy(
        EXAMPLE.replace("2026-12-example", "no-shoes") + "\n[category.shoes]\nreturnable = false\n"
    )
    since = datetime.now(UTC) - timedelta(days=1)

    first = simulate(service, closed_shoes, since).as_json()
    assert first["requests"] == 3
    assert first["by_category"]["shoes"] == {
        "lines": 2,
        "accepted_before": 2,
        "accepted_after": 0,
        "refused_before": 0,
        "refused_after": 2,
        "fees_before": {"EUR": "0.00"},
        "fees_after": {"EUR": "0.00"},
        "refunds_before": {"EUR": "100.00"},
        "refunds_after": {"EUR": "0.00"},
    }
    assert first["outcomes"] == {
        "before": {"authorized": 3},
        "after": {"authorized": 1, "rejected": 2},
    }
    assert first["by_category"]["toys"]["accepted_after"] == 1
    assert [(c["category"], c["before"], c["after"]) for c in first["changes"]] == [
        ("shoes", "accepted", "non_returnable_item")
    ] * 2
    # Replayed again: the same report, and the event store untouched.
    assert simulate(service, closed_shoes, since).as_json() == first
    assert last_notification_id(service) == written
    # The same policy as recorded changes nothing; a later --since sees no request.
    same = simulate(service, parse_policy(EXAMPLE), since).as_json()
    assert same["requests"] == 3 and same["changes"] == []
    assert (
        simulate(service, closed_shoes, datetime.now(UTC) + timedelta(days=1)).as_json()["requests"]
        == 0
    )


def test_rma_policy_simulate_prints_the_report(
    own_service: ReturnsService,
    own_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from adapters.driving.cli import main

    authorized_return(own_service, delivered_order(own_service, category="shoes"))
    candidate = tmp_path / "candidate.toml"
    candidate.write_text('version = "c1"\n[category.shoes]\nreturnable = false\n')
    monkeypatch.setenv("OMS_DATABASE_URL", own_url)
    today = datetime.now(UTC).date().isoformat()
    assert main(["policy", "simulate", str(candidate), "--since", today, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["requests"] == 1 and report["by_category"]["shoes"]["refused_after"] == 1
    assert main(["policy", "simulate", str(candidate), "--since", today]) == 0
    printed = capsys.readouterr().out
    assert "shoes: 1 lines, accepted 1 -> 0" in printed
    assert "after: rejected 1; held by rule: none" in printed
    assert "request " not in printed  # the per-request list only with --details
    assert main(["policy", "simulate", str(candidate), "--since", today, "--details"]) == 0
    assert "authorized [-] -> rejected [-], refund 50.00 -> 0.00 EUR" in capsys.readouterr().out


def test_a_stricter_candidate_reports_holds_by_rule_refunds_and_each_request_changed(
    own_service: ReturnsService,
) -> None:
    service = own_service
    # One customer returns three times, another once; each return is one 50.00 shoe.
    numbers = [delivered_order(service, customer_id="cust-often") for _ in range(3)]
    numbers.append(delivered_order(service, customer_id="cust-rarely"))
    outcomes = [authorized_return(service, n) for n in numbers]
    written = last_notification_id(service)
    strict = parse_policy(
        'version = "strict"\n[default]\nreview_threshold = "40.00"\n'
        "[review]\nserial_returner_returns = 2\nserial_returner_days = 30\n"
    )
    since = datetime.now(UTC) - timedelta(days=1)

    report = simulate(service, strict, since).as_json(details=True)
    assert report["outcomes"] == {
        "before": {"authorized": 4},
        "after": {"held_for_review": 4},
    }
    # Every 50.00 refund is above 40.00; the third of cust-often's also has two before it.
    assert report["holds"] == {
        "before": {},
        "after": {"amount_threshold": 4, "serial_returner": 1},
    }
    shoes = report["by_category"]["shoes"]
    assert (shoes["refunds_before"], shoes["refunds_after"]) == ({"EUR": "200.00"},) * 2
    changed = {c["return_id"]: c for c in report["request_changes"]}
    assert set(changed) == {str(o.aggregate_id) for o in outcomes}
    third = changed[str(outcomes[2].aggregate_id)]
    assert (third["before"], third["after"], third["rules_before"], third["rules_after"]) == (
        "authorized",
        "held_for_review",
        [],
        ["amount_threshold", "serial_returner"],
    )
    assert (third["order_number"], third["refund_before"], third["refund_after"]) == (
        numbers[2],
        "50.00",
        "50.00",
    )
    assert "request_changes" not in simulate(service, strict, since).as_json()
    assert last_notification_id(service) == written
