"""Review rules: which requests a person looks at before they are authorized.

A request the policy accepts may still be held for review, by any of these rules (each
named in the ``rma.held_for_review`` event, so an operator sees which one held it):

- ``amount_threshold``: the expected refund is above the currency's review threshold;
- ``currency_without_threshold``: the policy states no threshold for the currency, so
  nobody can judge what the amount is worth and a person does;
- ``reason_always_reviewed``: a line gives a reason the policy always reviews
  (``hold_reasons_always``, for example ``wrong_item``);
- ``serial_returner``: the customer already opened ``serial_returner_returns`` or more
  returns in the ``serial_returner_days`` before this request.

Pure: the customer's count of earlier returns is passed in by the handler, which reads it
from the lookups the application keeps beside the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from domain.values import Money, ReasonCode, Value

if TYPE_CHECKING:
    from domain.policy import ReturnPolicy

AMOUNT_THRESHOLD = "amount_threshold"
CURRENCY_WITHOUT_THRESHOLD = "currency_without_threshold"
REASON_ALWAYS_REVIEWED = "reason_always_reviewed"
SERIAL_RETURNER = "serial_returner"
RULES = (AMOUNT_THRESHOLD, CURRENCY_WITHOUT_THRESHOLD, REASON_ALWAYS_REVIEWED, SERIAL_RETURNER)


class ReviewRules(Value):
    """The ``[review]`` section of the policy file; the amount thresholds stay per policy
    (``review_threshold``, ``review_thresholds``), being per category and channel."""

    serial_returner_returns: int | None = Field(default=None, ge=1)
    """Hold a customer who already opened this many returns in ``serial_returner_days``;
    None (the default): the rule is off."""
    serial_returner_days: int = Field(default=90, ge=1)
    hold_reasons_always: tuple[ReasonCode, ...] = ()
    """Reasons whose requests are always held, whatever their amount."""

    def counts_returns(self) -> bool:
        return self.serial_returner_returns is not None


@dataclass(frozen=True)
class ReviewHold:
    rule: str
    reason: str


def review_holds(
    *,
    policy: ReturnPolicy,
    rules: ReviewRules,
    expected_refund: Money,
    reasons: Sequence[ReasonCode],
    earlier_returns: int | None,
) -> tuple[ReviewHold, ...]:
    """Every rule that holds this request, in a fixed order (empty: authorize it).

    ``earlier_returns``: the customer's returns opened in the ``serial_returner_days``
    before this one (None when unknown or not counted: the serial-returner rule is skipped).
    """
    holds: list[ReviewHold] = []
    currency = expected_refund.currency
    limit = policy.review_threshold_in(currency)
    if limit is None:
        holds.append(
            ReviewHold(
                CURRENCY_WITHOUT_THRESHOLD,
                f"no review threshold is set for {currency}: every return in it is reviewed"
                f" (expected refund {expected_refund})",
            )
        )
    elif expected_refund > limit:
        holds.append(
            ReviewHold(
                AMOUNT_THRESHOLD,
                f"expected refund {expected_refund} is above the review threshold {limit}",
            )
        )
    always = [r for r in dict.fromkeys(reasons) if r in rules.hold_reasons_always]
    if always:
        named = ", ".join(r.value for r in always)
        holds.append(ReviewHold(REASON_ALWAYS_REVIEWED, f"returns for {named} are always reviewed"))
    minimum = rules.serial_returner_returns
    if minimum is not None and earlier_returns is not None and earlier_returns >= minimum:
        holds.append(
            ReviewHold(
                SERIAL_RETURNER,
                f"the customer opened {earlier_returns} returns in the"
                f" {rules.serial_returner_days} days before (the policy reviews {minimum}"
                " or more)",
            )
        )
    return tuple(holds)
