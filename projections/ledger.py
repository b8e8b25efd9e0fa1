"""The refund ledger: double-entry lines per refund, balances per account and day, and a
requested-versus-settled reconciliation row per refund.

Entries (every one balances by construction; amounts per allocation):
- refund requested: debit ``returns_expense`` (the refund plus any restocking fee kept),
  credit ``refunds_payable:<method>`` per allocation and ``restocking_fee_income``.
- refund settled: debit ``refunds_payable:<method>``, credit ``cash:<method>`` (a refund
  to a store-credit payment credits ``store_credit_liability``: no cash moves).
- refund failed: the requested lines reversed (debit and credit swapped).
- store credit issued: debit ``returns_expense`` (credit plus fee kept) and
  ``store_credit_bonus_expense`` (the bonus), credit ``store_credit_liability`` and
  ``restocking_fee_income``.
- store credit spent (``store_credit.spent``, an order paid with it): debit
  ``store_credit_liability``, credit ``store_credit_redeemed`` (the sales it paid for);
  given back by the order's cancellation (``store_credit.credited``, ``order_cancelled``):
  the same reversed. Their ``refund_id`` is the order number and ``return_id`` the
  store-credit account's id. The account's other credits (a return's credit, a refund to a
  store-credit payment) are booked from the return's events above, not twice.

The restocking fee is booked exactly as the events carry it: the domain records it once per
return, with the first refund or store credit that has not failed (``Return.unbilled_fee``).
A failed refund's reversal takes its fee back and the next request carries it again; a
keep-the-item refund carries none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from projections.core import (
    RETURN,
    STORE_CREDIT,
    Append,
    Change,
    Event,
    Increment,
    Reducer,
    State,
    Upsert,
    day_of,
    money,
    on,
    parse_time,
)
from projections.schema import LEDGER_BALANCES, LEDGER_LINES, REFUNDS, Table

LINES = LEDGER_LINES.name
BALANCES = LEDGER_BALANCES.name
REFUND_ROWS = REFUNDS.name

EXPENSE = "returns_expense"
FEE_INCOME = "restocking_fee_income"
CREDIT_LIABILITY = "store_credit_liability"
BONUS_EXPENSE = "store_credit_bonus_expense"
CREDIT_REDEEMED = "store_credit_redeemed"

# A ledger line as kept in the state: (account, debit, credit) with amounts as strings.
Line = tuple[str, str, str]


def payable(method: str) -> str:
    return f"refunds_payable:{method}"


def paid_out(method: str) -> str:
    return CREDIT_LIABILITY if method == "store_credit" else f"cash:{method}"


def _by_method(allocations: list[Any]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for allocation in allocations:
        method = allocation["method"]
        totals[method] = totals.get(method, Decimal(0)) + money(allocation["amount"])
    return dict(sorted(totals.items()))


def requested_lines(allocations: list[Any], fee: Decimal) -> list[Line]:
    """Balanced by construction: the expense is the sum of what is credited."""
    by_method = _by_method(allocations)
    expense = sum(by_method.values(), Decimal(0)) + fee
    lines = [(EXPENSE, str(expense), "0")]
    lines += [(payable(m), "0", str(a)) for m, a in by_method.items()]
    if fee:
        lines.append((FEE_INCOME, "0", str(fee)))
    return lines


def settled_lines(allocations: list[Any]) -> list[Line]:
    lines: list[Line] = []
    for method, part in _by_method(allocations).items():
        lines += [(payable(method), str(part), "0"), (paid_out(method), "0", str(part))]
    return lines


def reversed_lines(lines: Sequence[Sequence[str]]) -> list[Line]:
    return [(account, credit, debit) for account, debit, credit in lines]


def store_credit_lines(amount: Decimal, bonus: Decimal, fee: Decimal) -> list[Line]:
    lines = [(EXPENSE, str(amount + fee), "0")]
    if bonus:
        lines.append((BONUS_EXPENSE, str(bonus), "0"))
    lines.append((CREDIT_LIABILITY, "0", str(amount + bonus)))
    if fee:
        lines.append((FEE_INCOME, "0", str(fee)))
    return lines


class RefundLedger(Reducer):
    name = "ledger"
    kinds = (RETURN, STORE_CREDIT)
    # The one definition of this topic's name: adapters/driven/kafka/topics.py derives from it.
    outbound_topic: ClassVar[str] = "oms.refund-ledger.v1"

    @property
    def tables(self) -> tuple[Table, ...]:
        return (LEDGER_LINES, LEDGER_BALANCES, REFUNDS)

    def message_key(self, table: str, row: Mapping[str, Any]) -> str | None:
        return str(row["refund_id"]) if table == LINES else None

    # ------------------------------------------------------------ writing entries
    @staticmethod
    def _post(
        out: list[Change],
        event: Event,
        refund_id: str,
        entry: str,
        currency: str,
        lines: list[Line],
    ) -> None:
        day = day_of(event.time)
        for n, (account, debit, credit) in enumerate(lines, start=1):
            dr, cr = Decimal(debit), Decimal(credit)
            if not dr and not cr:
                continue
            out.append(
                Append(
                    LINES,
                    f"{event.id}:{n}",
                    {
                        "refund_id": refund_id,
                        "return_id": event.aggregate_id,
                        "entry": entry,
                        "account": account,
                        "debit": dr,
                        "credit": cr,
                        "currency": currency,
                        "event_id": event.id,
                        "event_type": event.type,
                        "position": event.position,
                        "at": event.time,
                        "day": day,
                    },
                )
            )
            out.append(
                Increment(
                    BALANCES,
                    {"account": account, "currency": currency, "day": day},
                    {"debit": dr, "credit": cr},
                )
            )

    @staticmethod
    def _row(out: list[Change], event: Event, refund_id: str, refund: dict[str, Any]) -> None:
        def at(name: str) -> datetime | None:
            value = refund.get(name)
            return None if value is None else parse_time(value)

        out.append(
            Upsert(
                REFUND_ROWS,
                {"refund_id": refund_id},
                {
                    "return_id": event.aggregate_id,
                    "kind": refund["kind"],
                    "currency": refund["currency"],
                    "requested": Decimal(refund["requested"]),
                    "settled": Decimal(refund["settled"]),
                    "failed": Decimal(refund["failed"]),
                    "restocking_fee": Decimal(refund["fee"]),
                    "status": refund["status"],
                    "keep_item": refund["keep_item"],
                    "methods": ",".join(refund["methods"]),
                    "provider_reference": refund.get("provider_reference"),
                    "failure_reason": refund.get("failure_reason"),
                    "requested_at": at("requested_at"),
                    "settled_at": at("settled_at"),
                    "failed_at": at("failed_at"),
                },
            )
        )

    # ------------------------------------------------------------ the return's currency
    @on("rma.requested", "rma.blind_return_matched", "rma.in_store_return_recorded")
    def _opened(self, state: State, event: Event, out: list[Change]) -> None:
        state["currency"] = event.data["currency"]

    # ------------------------------------------------------------ refunds
    @on("rma.refund_requested")
    def _requested(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        refund_id = d["refund_id"]
        currency = d["amount"]["currency"]
        fee = money(d.get("restocking_fee"))
        lines = requested_lines(d["allocations"], fee)
        refund = {
            "kind": "refund",
            "currency": currency,
            "requested": str(money(d["amount"])),
            "settled": "0",
            "failed": "0",
            "fee": str(fee),
            "status": "requested",
            "keep_item": bool(d.get("keep_item")),
            "methods": sorted(_by_method(d["allocations"])),
            "allocations": d["allocations"],
            "lines": lines,
            "requested_at": event.time.isoformat(),
        }
        state.setdefault("refunds", {})[refund_id] = refund
        self._post(out, event, refund_id, "requested", currency, lines)
        self._row(out, event, refund_id, refund)

    @on("rma.refund_settled")
    def _settled(self, state: State, event: Event, out: list[Change]) -> None:
        refund = state.get("refunds", {}).get(event.data["refund_id"])
        if refund is None or refund["status"] != "requested":
            return
        refund.update(
            status="settled",
            settled=str(money(event.data["amount"])),
            provider_reference=event.data.get("provider_reference"),
            settled_at=event.time.isoformat(),
        )
        lines = settled_lines(refund["allocations"])
        self._post(out, event, event.data["refund_id"], "settled", refund["currency"], lines)
        self._row(out, event, event.data["refund_id"], refund)

    @on("rma.refund_failed")
    def _failed(self, state: State, event: Event, out: list[Change]) -> None:
        refund_id = event.data["refund_id"]
        refund = state.get("refunds", {}).get(refund_id)
        if refund is None or refund["status"] != "requested":
            return
        refund.update(
            status="failed",
            failed=refund["requested"],
            failure_reason=event.data.get("reason"),
            failed_at=event.time.isoformat(),
        )
        lines = reversed_lines(refund["lines"])
        self._post(out, event, refund_id, "failed", refund["currency"], lines)
        self._row(out, event, refund_id, refund)

    @on("rma.store_credit_issued")
    def _store_credit(self, state: State, event: Event, out: list[Change]) -> None:
        d = event.data
        credit_id = d["credit_id"]
        currency = d["amount"]["currency"]
        amount, bonus = money(d["amount"]), money(d["bonus"])
        fee = money(d.get("restocking_fee"))
        lines = store_credit_lines(amount, bonus, fee)
        refund = {
            "kind": "store_credit",
            "currency": currency,
            "requested": str(amount + bonus),
            # Store credit is paid out as it is issued: nothing is left to settle.
            "settled": str(amount + bonus),
            "failed": "0",
            "fee": str(fee),
            "status": "issued",
            "keep_item": False,
            "methods": ["store_credit"],
            "requested_at": event.time.isoformat(),
            "settled_at": event.time.isoformat(),
        }
        state.setdefault("refunds", {})[credit_id] = refund
        self._post(out, event, credit_id, "store_credit", currency, lines)
        self._row(out, event, credit_id, refund)

    # ------------------------------------------------------------ store credit spent
    @on("store_credit.spent")
    def _credit_spent(self, state: State, event: Event, out: list[Change]) -> None:
        amount = money(event.data["amount"])
        lines = [(CREDIT_LIABILITY, str(amount), "0"), (CREDIT_REDEEMED, "0", str(amount))]
        self._spend_entry(out, event, "store_credit_spent", lines)

    @on("store_credit.credited")
    def _credit_given_back(self, state: State, event: Event, out: list[Change]) -> None:
        if event.data["reason"] != "order_cancelled":
            return  # a return's credit or a refund: booked from the return's own events
        amount = money(event.data["amount"])
        lines = [(CREDIT_REDEEMED, str(amount), "0"), (CREDIT_LIABILITY, "0", str(amount))]
        self._spend_entry(out, event, "store_credit_restored", lines)

    def _spend_entry(self, out: list[Change], event: Event, entry: str, lines: list[Line]) -> None:
        currency = event.data["amount"]["currency"]
        self._post(out, event, str(event.data["reference"]), entry, currency, lines)
