"""What a candidate policy would have decided on recorded requests: pure comparison.

The recorded decisions are the baseline (each made by the policy of its day); the
candidate's are computed by the same ``decide_lines`` and ``review_holds`` at the same
moment, so only the policy differs. Lines are compared (accepted or refused, and the
restocking fee), and whole requests: authorized, held for review (by which rules) or
rejected, with the refund their lines would bring (line value less fees, nothing for a
rejected request; shipping apart, being the order's and not a category's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.events import LineDecision, ReturnLine
from domain.order import Order
from domain.policy import PolicyBook
from domain.returns.lines import decide_lines, sum_fees
from domain.returns.payouts import max_zero
from domain.review import review_holds
from domain.values import Money

AUTHORIZED = "authorized"
HELD = "held_for_review"
REJECTED = "rejected"
# A hold recorded before holds named their rules.
UNNAMED_RULE = "unnamed"


@dataclass
class CategoryTally:
    lines: int = 0
    accepted_before: int = 0
    accepted_after: int = 0
    # Fees per currency: amounts in different currencies are never added together.
    fees_before: dict[str, Decimal] = field(default_factory=dict)
    fees_after: dict[str, Decimal] = field(default_factory=dict)
    refunds_before: dict[str, Decimal] = field(default_factory=dict)
    refunds_after: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class Recorded:
    """How a request was first decided: the outcome, the lines' decisions and, for a
    hold, the rules it named."""

    outcome: str
    decisions: Sequence[LineDecision]
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestChange:
    """One request the candidate would decide otherwise (``--details``)."""

    return_id: str
    order_number: str
    decided_at: str
    before: str
    after: str
    rules_before: list[str]
    rules_after: list[str]
    currency: str
    refund_before: str
    refund_after: str
    fees_before: str
    fees_after: str


@dataclass(frozen=True)
class LineChange:
    return_id: str
    line_no: int
    category: str
    before: str
    after: str
    fee_before: str
    fee_after: str


@dataclass
class SimulationReport:
    requests: int = 0
    by_category: dict[str, CategoryTally] = field(default_factory=dict)
    changes: list[LineChange] = field(default_factory=list)
    # Requests by outcome and holds by rule (a hold naming two rules counts under each).
    outcomes_before: dict[str, int] = field(default_factory=dict)
    outcomes_after: dict[str, int] = field(default_factory=dict)
    holds_before: dict[str, int] = field(default_factory=dict)
    holds_after: dict[str, int] = field(default_factory=dict)
    request_changes: list[RequestChange] = field(default_factory=list)

    def add(
        self,
        return_id: str,
        order: Order,
        lines: Sequence[ReturnLine],
        recorded: Sequence[LineDecision] | Recorded,
        candidate: PolicyBook,
        decided_at: datetime,
        *,
        earlier_returns: int | None = None,
        shipping: Money | None = None,
    ) -> None:
        """One recorded request: its recorded decisions against the candidate's.

        ``earlier_returns``: the customer's returns opened in the candidate's
        serial-returner period before ``decided_at``; ``shipping``: the shipping refund the
        request carried (it only moves a request across the amount threshold)."""
        if not isinstance(recorded, Recorded):
            recorded = Recorded(AUTHORIZED, recorded)  # lines only: outcome unknown
        self.requests += 1
        decided = decide_lines(order, tuple(lines), candidate, decided_at, blind=False)
        after = {d.line_no: d for d in decided}
        before = {d.line_no: d for d in recorded.decisions}
        currency = order.state.currency
        outcome, rules = _candidate_outcome(
            order, lines, decided, candidate, earlier_returns, shipping or Money.zero(currency)
        )
        request_before = _RequestSums(currency)
        request_after = _RequestSums(currency)
        for line in lines:
            old, new = before.get(line.line_no), after[line.line_no]
            if old is None:
                continue  # decided before lines carried decisions: nothing to compare with
            category = order.line(line.line_no).category
            tally = self.by_category.setdefault(category, CategoryTally())
            tally.lines += 1
            tally.accepted_before += old.accepted
            tally.accepted_after += new.accepted
            currency = line.unit_price.currency
            old_fee = old.restocking_fee.amount if old.accepted else Decimal(0)
            new_fee = new.restocking_fee.amount if new.accepted else Decimal(0)
            tally.fees_before[currency] = tally.fees_before.get(currency, Decimal(0)) + old_fee
            tally.fees_after[currency] = tally.fees_after.get(currency, Decimal(0)) + new_fee
            value = line.unit_price.amount * line.quantity
            old_refund = request_before.add(recorded.outcome, value, old_fee)
            new_refund = request_after.add(outcome, value, new_fee)
            _add(tally.refunds_before, currency, old_refund)
            _add(tally.refunds_after, currency, new_refund)
            if (old.accepted, old.code, old_fee) != (new.accepted, new.code, new_fee):
                self.changes.append(
                    LineChange(
                        return_id, line.line_no, category, old.code, new.code,
                        _amount(old_fee, currency), _amount(new_fee, currency),
                    )
                )  # fmt: skip
        rules_before = recorded.rules or ((UNNAMED_RULE,) if recorded.outcome == HELD else ())
        _count(self.outcomes_before, recorded.outcome)
        _count(self.outcomes_after, outcome)
        for rule in rules_before:
            _count(self.holds_before, rule)
        for rule in rules:
            _count(self.holds_after, rule)
        if (recorded.outcome, rules_before, request_before.totals()) != (
            outcome,
            rules,
            request_after.totals(),
        ):
            self.request_changes.append(
                RequestChange(
                    return_id=return_id,
                    order_number=order.state.order_number,
                    decided_at=decided_at.isoformat(),
                    before=recorded.outcome,
                    after=outcome,
                    rules_before=list(rules_before),
                    rules_after=list(rules),
                    currency=currency,
                    refund_before=_amount(request_before.refund, currency),
                    refund_after=_amount(request_after.refund, currency),
                    fees_before=_amount(request_before.fees, currency),
                    fees_after=_amount(request_after.fees, currency),
                )
            )

    def as_json(self, *, details: bool = False) -> dict[str, Any]:
        """``details``: add ``request_changes``, each request the candidate would decide
        otherwise (outcome, review rules, refund or fees)."""
        report = self._as_json()
        report["outcomes"] = {
            "before": dict(sorted(self.outcomes_before.items())),
            "after": dict(sorted(self.outcomes_after.items())),
        }
        report["holds"] = {
            "before": dict(sorted(self.holds_before.items())),
            "after": dict(sorted(self.holds_after.items())),
        }
        if details:
            report["request_changes"] = [vars(change) for change in self.request_changes]
        return report

    def _as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_category": {
                name: {
                    "lines": t.lines,
                    "accepted_before": t.accepted_before,
                    "accepted_after": t.accepted_after,
                    "refused_before": t.lines - t.accepted_before,
                    "refused_after": t.lines - t.accepted_after,
                    "fees_before": {c: _amount(a, c) for c, a in t.fees_before.items()},
                    "fees_after": {c: _amount(a, c) for c, a in t.fees_after.items()},
                    "refunds_before": {c: _amount(a, c) for c, a in t.refunds_before.items()},
                    "refunds_after": {c: _amount(a, c) for c, a in t.refunds_after.items()},
                }
                for name, t in sorted(self.by_category.items())
            },
            "changes": [vars(change) for change in self.changes],
        }


def _amount(amount: Decimal, currency: str) -> str:
    # In the currency's minor units: a refused line's zero fee reads as "0.00" too.
    return str(Money.of(amount, currency).amount)


@dataclass
class _RequestSums:
    currency: str
    refund: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)

    def add(self, outcome: str, value: Decimal, fee: Decimal) -> Decimal:
        """Add a line; what it would refund (nothing when the request is rejected)."""
        if outcome == REJECTED:
            return Decimal(0)
        self.refund += value - fee
        self.fees += fee
        return value - fee

    def totals(self) -> tuple[Decimal, Decimal]:
        return self.refund, self.fees


def _candidate_outcome(
    order: Order,
    lines: Sequence[ReturnLine],
    decisions: Sequence[LineDecision],
    book: PolicyBook,
    earlier_returns: int | None,
    shipping: Money,
) -> tuple[str, tuple[str, ...]]:
    """What ``Return.decide`` would do under ``book``: the same steps, on the same data."""
    if any(not d.accepted for d in decisions):
        return REJECTED, ()
    currency = order.state.currency
    value = Money.zero(currency)
    for line in lines:
        value = value + line.unit_price.times(line.quantity)
    fee = sum_fees(tuple(decisions), currency)
    first = order.line(lines[0].line_no).category if lines else "general"
    holds = review_holds(
        policy=book.policy_for(first, order.state.channel),
        rules=book.review,
        expected_refund=max_zero(value - fee + shipping),
        reasons=[line.reason for line in lines],
        earlier_returns=earlier_returns,
    )
    if holds:
        return HELD, tuple(hold.rule for hold in holds)
    return AUTHORIZED, ()


def _add(totals: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    totals[currency] = totals.get(currency, Decimal(0)) + amount


def _count(counts: dict[str, int], name: str) -> None:
    counts[name] = counts.get(name, 0) + 1
