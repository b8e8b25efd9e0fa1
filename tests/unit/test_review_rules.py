"""Review rules of the policy file: serial returners and reasons always reviewed hold a
request for a person, the amount thresholds still do, and the hold names its rules and the
policy version; the [review] section's mistakes are told in words."""

from __future__ import annotations

import pytest

from domain.events import ReturnAuthorized, ReturnHeldForReview
from domain.order import Order
from domain.policy import PolicyBook
from domain.policy_file import PolicyFileError, describe_policy, parse_policy
from domain.returns import Return, ReturnStatus
from domain.review import ReviewRules
from domain.values import ReasonCode
from tests.unit.builders import (
    CAUSE,
    LABEL,
    RMA,
    WAREHOUSE,
    day,
    expensive_order,
    given,
    last,
    requested_return,
    shop_order,
    wants,
)

RULES = parse_policy(
    'version = "strict-1"\n[review]\nserial_returner_returns = 3\nserial_returner_days = 60\n'
    'hold_reasons_always = ["wrong_item"]\n'
)


def decide(
    rma: Return, order: Order, book: PolicyBook, earlier_returns: int | None, at: int = 10
) -> None:
    rma.decide(
        order=order,
        book=book,
        rma_number=RMA,
        destination_warehouse=WAREHOUSE,
        label_reference=LABEL,
        at=day(at),
        cause=CAUSE,
        earlier_returns=earlier_returns,
    )


def test_a_customer_with_as_many_earlier_returns_as_the_rule_says_is_held() -> None:
    order = shop_order()
    rma = given(requested_return(order))
    decide(rma, order, RULES, earlier_returns=3)
    event = last(rma)
    assert isinstance(event, ReturnHeldForReview)
    assert event.rules == ("serial_returner",)
    assert event.policy_version == "strict-1"
    assert "opened 3 returns in the 60 days before" in event.reason
    assert rma.state.status is ReturnStatus.PENDING_REVIEW
    assert rma.state.review_rules == ("serial_returner",)


def test_one_return_fewer_than_the_rule_says_is_authorized() -> None:
    order = shop_order()
    rma = given(requested_return(order))
    decide(rma, order, RULES, earlier_returns=2)
    assert isinstance(last(rma), ReturnAuthorized)


def test_the_serial_returner_rule_is_off_by_default_whatever_the_count() -> None:
    order = shop_order()
    rma = given(requested_return(order))
    decide(rma, order, PolicyBook(), earlier_returns=40)
    assert isinstance(last(rma), ReturnAuthorized)
    assert not PolicyBook().review.counts_returns()


def test_a_reason_always_reviewed_holds_even_a_small_return() -> None:
    order = shop_order()
    rma = given(requested_return(order, wants(reason=ReasonCode.WRONG_ITEM)))
    decide(rma, order, RULES, earlier_returns=0)
    event = last(rma)
    assert isinstance(event, ReturnHeldForReview)
    assert event.rules == ("reason_always_reviewed",)
    assert event.reason == "returns for wrong_item are always reviewed"


def test_every_rule_that_holds_is_named_the_amount_threshold_first() -> None:
    order = expensive_order()
    rma = given(requested_return(order, wants(quantity=2, reason=ReasonCode.WRONG_ITEM)))
    decide(rma, order, RULES, earlier_returns=5)
    event = last(rma)
    assert isinstance(event, ReturnHeldForReview)
    assert event.rules == ("amount_threshold", "reason_always_reviewed", "serial_returner")
    assert event.reason.startswith("expected refund 1200.00 EUR is above the review threshold")


def test_the_amount_threshold_names_its_rule_under_the_built_in_policy() -> None:
    order = expensive_order()
    rma = given(requested_return(order, wants(quantity=2)))
    decide(rma, order, PolicyBook(), earlier_returns=None)
    event = last(rma)
    assert isinstance(event, ReturnHeldForReview)
    assert (event.rules, event.policy_version) == (("amount_threshold",), None)


def test_the_review_section_is_read_and_shown() -> None:
    assert RULES.review == ReviewRules(
        serial_returner_returns=3,
        serial_returner_days=60,
        hold_reasons_always=(ReasonCode.WRONG_ITEM,),
    )
    assert describe_policy(RULES)["review"] == {
        "serial_returner_returns": 3,
        "serial_returner_days": 60,
        "hold_reasons_always": ["wrong_item"],
    }


MISTAKES = [
    ("[review]\nserial_returner_returns = 0", "serial_returner_returns: Input should be greater"),
    ('[review]\nserial_returner_returns = "5"', "serial_returner_returns: must be a whole number"),
    ("[review]\nserial_returner_days = 1.5", "serial_returner_days: must be a whole number"),
    ('[review]\nhold_reasons_always = ["broken"]', "hold_reasons_always: unknown reason code"),
    ('[review]\nhold_reasons_always = "wrong_item"', "hold_reasons_always: must be a list"),
    ("[review]\nserial_returners = 5", "serial_returners: unknown review rule (expected one"),
]


@pytest.mark.parametrize(("text", "message"), [*MISTAKES, ("review = 5", "")])
def test_a_mistake_in_the_review_section_names_the_file_and_the_key(
    text: str, message: str
) -> None:
    with pytest.raises(PolicyFileError) as raised:
        parse_policy(text, "policy.toml")
    assert str(raised.value).startswith(f"policy.toml: review{'.' if message else ''}{message}")


def test_a_simulation_reports_the_holds_refunds_and_requests_a_candidate_would_change() -> None:
    from domain.policy_simulation import AUTHORIZED, Recorded, SimulationReport

    order = shop_order()  # a change of mind on day 20 bears the 10% fee
    rma = given(requested_return(order, wants(1, 1), at=day(20)))
    decide(rma, order, PolicyBook(), earlier_returns=None, at=20)
    recorded = Recorded(AUTHORIZED, last(rma).decisions)
    lines = tuple(rma.state.lines.values())
    candidate = parse_policy(
        'version = "c"\n[default]\nrestocking_fee_rate = "0.25"\n[review]\n'
        "serial_returner_returns = 1\n"
    )
    report = SimulationReport()
    report.add("r1", order, lines, recorded, candidate, day(20), earlier_returns=1)
    report.add("r2", order, lines, recorded, candidate, day(20), earlier_returns=0)
    shown = report.as_json(details=True)
    assert shown["outcomes"] == {
        "before": {"authorized": 2},
        "after": {"authorized": 1, "held_for_review": 1},
    }
    assert shown["holds"] == {"before": {}, "after": {"serial_returner": 1}}
    tally = shown["by_category"]["general"]
    assert (tally["refunds_before"], tally["refunds_after"]) == (
        {"EUR": "72.00"},
        {"EUR": "60.00"},
    )
    assert [(c["return_id"], c["before"], c["after"], c["rules_after"]) for c in
            shown["request_changes"]] == [
        ("r1", "authorized", "held_for_review", ["serial_returner"]),
        ("r2", "authorized", "authorized", []),
    ]  # fmt: skip
    assert shown["request_changes"][1]["fees_after"] == "10.00"
