"""What a candidate policy would have decided on recorded requests: pure comparison.

The recorded decisions are the baseline (each made by the policy of its day); the
candidate's are computed by the same ``decide_lines`` at the same moment, so only the
policy differs. Lines are compared: accepted or refused, and the restocking fee.
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
from domain.returns.lines import decide_lines
from domain.values import Money


@dataclass
class CategoryTally:
    lines: int = 0
    accepted_before: int = 0
    accepted_after: int = 0
    # Fees per currency: amounts in different currencies are never added together.
    fees_before: dict[str, Decimal] = field(default_factory=dict)
    fees_after: dict[str, Decimal] = field(default_factory=dict)


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

    def add(
        self,
        return_id: str,
        order: Order,
        lines: Sequence[ReturnLine],
        recorded: Sequence[LineDecision],
        candidate: PolicyBook,
        decided_at: datetime,
    ) -> None:
        """One recorded request: its recorded decisions against the candidate's."""
        self.requests += 1
        after = {
            d.line_no: d
            for d in decide_lines(order, tuple(lines), candidate, decided_at, blind=False)
        }
        before = {d.line_no: d for d in recorded}
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
            if (old.accepted, old.code, old_fee) != (new.accepted, new.code, new_fee):
                self.changes.append(
                    LineChange(
                        return_id, line.line_no, category, old.code, new.code,
                        _amount(old_fee, currency), _amount(new_fee, currency),
                    )
                )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
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
                }
                for name, t in sorted(self.by_category.items())
            },
            "changes": [vars(change) for change in self.changes],
        }


def _amount(amount: Decimal, currency: str) -> str:
    # In the currency's minor units: a refused line's zero fee reads as "0.00" too.
    return str(Money.of(amount, currency).amount)
