"""The refund ledger: entries that always balance, balances per day, reconciliation rows."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import (
    RefundFailed,
    RefundRequested,
    RefundSettled,
    StoreCreditCredited,
    StoreCreditIssued,
    StoreCreditSpent,
)
from projections.core import Event, InMemoryReadModel, key_of
from projections.ledger import RefundLedger
from tests.unit.builders import (
    CAUSE,
    Story,
    assert_folds_like_reduce,
    day,
    decide,
    delivered_order,
    eur,
    inspect,
    inspected,
    receive,
    received,
    relayed,
    request_refund,
    requested_return,
    uid,
    wants,
    wire,
)
from tests.unit.builders import line as order_line

RMA = uid("ledger-rma")


def requested(
    story: Story,
    refund_id: str,
    parts: list[tuple[str, str]],
    fee: str = "0.00",
    aggregate: UUID = RMA,
    keep_item: bool = False,
) -> Event:
    total = sum((Decimal(a) for _, a in parts), Decimal(0))
    return story.add(
        RefundRequested,
        aggregate,
        refund_id=refund_id,
        amount=eur(str(total)),
        restocking_fee=eur(fee),
        shipping_refund=eur("0.00"),
        allocations=tuple(
            {"payment_id": f"P-{m}", "method": m, "amount": wire(a)} for m, a in parts
        ),
        keep_item=keep_item,
    )


def lines_of(model: InMemoryReadModel, refund_id: str) -> list[tuple[str, str, str, str]]:
    return [
        (r["entry"], r["account"], str(r["debit"]), str(r["credit"]))
        for r in sorted(model.rows("rm_ledger_lines"), key=lambda r: (r["position"], r["id"]))
        if r["refund_id"] == refund_id
    ]


def refund_row(model: InMemoryReadModel, refund_id: str) -> dict[str, Any]:
    return model.tables["rm_refunds"][key_of({"refund_id": refund_id})]


def test_a_requested_and_settled_refund_moves_money_through_payables_to_cash() -> None:
    story = Story()
    requested(story, "RF-1", [("card", "60.00"), ("gift_card", "40.00")], fee="10.00")
    story.add(
        RefundSettled, RMA, refund_id="RF-1", provider_reference="psp-1", amount=eur("100.00")
    )
    model = InMemoryReadModel(RefundLedger())
    model.apply(story.events)
    assert lines_of(model, "RF-1") == [
        ("requested", "returns_expense", "110.00", "0"),
        ("requested", "refunds_payable:card", "0", "60.00"),
        ("requested", "refunds_payable:gift_card", "0", "40.00"),
        ("requested", "restocking_fee_income", "0", "10.00"),
        ("settled", "refunds_payable:card", "60.00", "0"),
        ("settled", "cash:card", "0", "60.00"),
        ("settled", "refunds_payable:gift_card", "40.00", "0"),
        ("settled", "cash:gift_card", "0", "40.00"),
    ]
    row = refund_row(model, "RF-1")
    assert (row["status"], row["requested"], row["settled"], row["failed"]) == (
        "settled",
        Decimal("100.00"),
        Decimal("100.00"),
        Decimal("0"),
    )
    assert row["methods"] == "card,gift_card" and row["provider_reference"] == "psp-1"


def test_a_failed_refund_is_reversed_and_its_fee_rides_on_the_next_request() -> None:
    story = Story()
    requested(story, "RF-1", [("card", "90.00")], fee="10.00")
    story.add(RefundFailed, RMA, refund_id="RF-1", reason="card expired")
    # What the domain emits (Return.unbilled_fee): the fee again on the retry, none after.
    requested(story, "RF-2", [("card", "90.00")], fee="10.00")
    requested(story, "RF-3", [("card", "5.00")], fee="0.00")
    model = InMemoryReadModel(RefundLedger())
    model.apply(story.events)
    assert [line for line in lines_of(model, "RF-1") if line[0] == "failed"] == [
        ("failed", "returns_expense", "0", "100.00"),
        ("failed", "refunds_payable:card", "90.00", "0"),
        ("failed", "restocking_fee_income", "10.00", "0"),
    ]
    assert ("requested", "restocking_fee_income", "0", "10.00") in lines_of(model, "RF-2")
    assert all(account != "restocking_fee_income" for _, account, _, _ in lines_of(model, "RF-3"))
    assert refund_row(model, "RF-1")["failed"] == Decimal("90.00")


def test_store_credit_is_a_liability_and_its_bonus_an_expense() -> None:
    story = Story()
    story.add(
        StoreCreditIssued,
        RMA,
        credit_id="SC-1",
        amount=eur("50.00"),
        bonus=eur("5.00"),
        restocking_fee=eur("4.00"),
    )
    model = InMemoryReadModel(RefundLedger())
    model.apply(story.events)
    assert lines_of(model, "SC-1") == [
        ("store_credit", "returns_expense", "54.00", "0"),
        ("store_credit", "store_credit_bonus_expense", "5.00", "0"),
        ("store_credit", "store_credit_liability", "0", "55.00"),
        ("store_credit", "restocking_fee_income", "0", "4.00"),
    ]
    assert refund_row(model, "SC-1")["status"] == "issued"


def test_a_refund_to_a_store_credit_payment_credits_the_liability_not_cash() -> None:
    story = Story()
    requested(story, "RF-1", [("store_credit", "20.00")])
    story.add(RefundSettled, RMA, refund_id="RF-1", provider_reference="x", amount=eur("20.00"))
    model = InMemoryReadModel(RefundLedger())
    model.apply(story.events)
    assert ("settled", "store_credit_liability", "0", "20.00") in lines_of(model, "RF-1")


def test_a_keep_the_item_refund_withholds_no_fee() -> None:
    story = Story()
    requested(story, "RF-1", [("card", "15.00")], fee="0.00", keep_item=True)
    model = InMemoryReadModel(RefundLedger())
    model.apply(story.events)
    assert all(line[1] != "restocking_fee_income" for line in lines_of(model, "RF-1"))


def test_the_fee_a_return_emits_is_income_once_through_a_failed_refund_and_its_retry() -> None:
    order = delivered_order(order_line(quantity=2, price="40.00"))
    rma = requested_return(order, wants(quantity=2), at=day(20))
    decide(rma, order, at=day(20))
    receive(rma, received(quantity=2), at=day(22))
    inspect(rma, inspected(quantity=2), at=day(23))
    fee = rma.unbilled_fee()
    due = str(rma.items_due_unpaid().amount)
    request_refund(rma, due, "RF-1", at=day(23))
    rma.fail_refund("RF-1", "card expired", day(24), CAUSE)
    request_refund(rma, due, "RF-2", at=day(25))
    rma.settle_refund("RF-2", "psp-2", eur(due), day(26), CAUSE)
    model = InMemoryReadModel(RefundLedger())
    model.apply(relayed(rma.pending_events))
    income = [
        (r["refund_id"], r["credit"] - r["debit"])
        for r in sorted(model.rows("rm_ledger_lines"), key=lambda r: (r["position"], r["id"]))
        if r["account"] == "restocking_fee_income"
    ]
    assert fee.amount > 0
    assert income == [("RF-1", fee.amount), ("RF-1", -fee.amount), ("RF-2", fee.amount)]
    assert refund_row(model, "RF-2")["restocking_fee"] == fee.amount


# ---------------------------------------------------------------- properties
METHODS = ["card", "paypal", "bnpl", "gift_card", "store_credit"]
cents = st.integers(0, 50_000).map(lambda c: str(Decimal(c) / 100))
operation = st.one_of(
    st.tuples(
        st.just("request"),
        st.lists(st.tuples(st.sampled_from(METHODS), cents), min_size=0, max_size=3),
        cents,
        st.booleans(),
    ),
    st.tuples(st.just("settle"), st.integers(0, 5)),
    st.tuples(st.just("fail"), st.integers(0, 5)),
    st.tuples(st.just("credit"), cents, cents, cents),
    st.tuples(st.just("spend"), cents, st.booleans()),
)


def spend_and_cancel(
    story: Story, account: UUID, order: str, amount: str, cancelled: bool = False
) -> None:
    """An order paid with store credit (balances are the domain's affair, not the ledger's),
    and its cancellation giving the credit back."""
    moved = {"customer_id": "c", "reference": order, "amount": eur(amount)}
    story.add(StoreCreditSpent, account, balance=eur("0.00"), **moved)
    if cancelled:
        story.add(
            StoreCreditCredited, account, reason="order_cancelled", balance=eur(amount), **moved
        )


def story_of(script: list[tuple[int, tuple[Any, ...]]]) -> Story:
    """Any sequence of refund events over three returns, sensible or not, except that a fee
    rides only where the domain puts it (``Return.unbilled_fee``): on the first payout that
    has not failed, never on a keep-the-item refund."""
    story = Story()
    refunds: dict[int, list[str]] = defaultdict(list)
    failed: set[str] = set()
    settled: set[str] = set()
    credited: set[int] = set()

    def unbilled(rma_no: int, fee: str) -> str:
        billed = rma_no in credited or any(r not in failed for r in refunds[rma_no])
        return "0.00" if billed else fee

    for n, (rma_no, op) in enumerate(script):
        rma = uid(f"p-rma-{rma_no}")
        match op:
            case ("request", parts, fee, keep):
                refund_id = f"RF-{rma_no}-{n}"
                carried = "0.00" if keep else unbilled(rma_no, fee)
                refunds[rma_no].append(refund_id)
                requested(story, refund_id, list(parts), fee=carried, aggregate=rma, keep_item=keep)
            case ("settle", pick) if refunds[rma_no]:
                refund_id = refunds[rma_no][pick % len(refunds[rma_no])]
                if refund_id not in failed:
                    settled.add(refund_id)
                story.add(
                    RefundSettled,
                    rma,
                    refund_id=refund_id,
                    provider_reference="p",
                    amount=eur("1.00"),
                )
            case ("fail", pick) if refunds[rma_no]:
                refund_id = refunds[rma_no][pick % len(refunds[rma_no])]
                if refund_id not in settled:
                    failed.add(refund_id)
                story.add(RefundFailed, rma, refund_id=refund_id, reason="no")
            case ("spend", amount, cancelled):
                spend_and_cancel(story, uid(f"p-account-{rma_no}"), f"WEB-{n}", amount, cancelled)
            case ("credit", amount, bonus, fee):
                carried = unbilled(rma_no, fee)
                credited.add(rma_no)
                story.add(
                    StoreCreditIssued,
                    rma,
                    credit_id=f"SC-{rma_no}-{n}",
                    amount=eur(amount),
                    bonus=eur(bonus),
                    restocking_fee=eur(carried),
                )
    return story


scripts = st.lists(st.tuples(st.integers(0, 2), operation), max_size=25)


@settings(max_examples=150, deadline=None)
@given(scripts)
def test_the_ledger_balances_per_refund_and_overall_whatever_happens(
    script: list[tuple[int, tuple[Any, ...]]],
) -> None:
    story = story_of(script)
    model = InMemoryReadModel(RefundLedger())
    model.apply(story.events)
    lines = model.rows("rm_ledger_lines")
    per_refund: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        per_refund[line["refund_id"]] += line["debit"] - line["credit"]
    assert all(v == 0 for v in per_refund.values()), per_refund
    balances = model.rows("rm_ledger_balances")
    assert sum((b["debit"] for b in balances), Decimal(0)) == sum(
        (b["credit"] for b in balances), Decimal(0)
    )
    # Balances are the sums of the lines, account by account.
    by_account: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        by_account[line["account"]] += line["debit"] - line["credit"]
    for b in balances:
        assert b["debit"] - b["credit"] == by_account[b["account"]]
    # Fees are income once per return at most, never negative.
    fee_income: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        if line["account"] == "restocking_fee_income":
            fee_income[line["return_id"]] += line["credit"] - line["debit"]
    assert all(v >= 0 for v in fee_income.values())


@settings(max_examples=100, deadline=None)
@given(scripts, st.integers(1, 6), st.integers(0, 30))
def test_applying_a_batch_again_or_in_other_batches_changes_nothing(
    script: list[tuple[int, tuple[Any, ...]]], size: int, replay_from: int
) -> None:
    events = story_of(script).events
    once = InMemoryReadModel(RefundLedger())
    once.apply(events)
    batched = InMemoryReadModel(RefundLedger())
    for start in range(0, len(events), size):
        batched.apply(events[start : start + size])
    batched.apply(events[replay_from:])  # redelivered after a crash
    batched.apply(events)  # republished by the relay
    assert batched.tables == once.tables
    assert batched.states == once.states


@settings(max_examples=60, deadline=None)
@given(scripts)
def test_folding_a_batch_in_place_equals_reducing_it_event_by_event(
    script: list[tuple[int, tuple[Any, ...]]],
) -> None:
    assert_folds_like_reduce(RefundLedger(), story_of(script).events)


def test_a_dinar_refund_keeps_its_fils_and_a_replay_with_duplicates_gives_the_same_ledger() -> None:
    def kwd(value: str) -> dict[str, str]:
        return {"amount": value, "currency": "KWD"}

    story = Story()
    story.add(
        RefundRequested,
        RMA,
        refund_id="RF-K",
        amount=kwd("13.595"),
        restocking_fee=kwd("0.125"),
        shipping_refund=kwd("1.250"),
        allocations=(
            {"payment_id": "P-card", "method": "card", "amount": kwd("9.063")},
            {"payment_id": "P-paypal", "method": "paypal", "amount": kwd("4.532")},
        ),
        keep_item=False,
    )
    story.add(
        RefundSettled, RMA, refund_id="RF-K", provider_reference="psp-k", amount=kwd("13.595")
    )
    live = InMemoryReadModel(RefundLedger())
    live.apply(story.events)
    assert lines_of(live, "RF-K")[:4] == [
        ("requested", "returns_expense", "13.720", "0"),
        ("requested", "refunds_payable:card", "0", "9.063"),
        ("requested", "refunds_payable:paypal", "0", "4.532"),
        ("requested", "restocking_fee_income", "0", "0.125"),
    ]
    row = refund_row(live, "RF-K")
    assert (row["currency"], row["requested"], row["settled"]) == (
        "KWD",
        Decimal("13.595"),
        Decimal("13.595"),
    )
    replayed = InMemoryReadModel(RefundLedger())
    replayed.apply(story.events)
    replayed.apply(story.events)  # redelivered: changes nothing twice
    assert replayed.tables == live.tables


# ---------------------------------------------------------------- store credit spent
ACCOUNT = uid("ledger-account")


def test_store_credit_spent_on_an_order_takes_the_liability_down() -> None:
    story = Story()
    story.add(
        StoreCreditIssued,
        RMA,
        credit_id="SC-1",
        amount=eur("50.00"),
        bonus=eur("5.00"),
        restocking_fee=eur("0.00"),
    )
    # The account's own credit for that return is booked once, from the return's event.
    story.add(
        StoreCreditCredited,
        ACCOUNT,
        customer_id="c",
        reference="SC-1",
        reason="return",
        amount=eur("55.00"),
        balance=eur("55.00"),
    )
    spend_and_cancel(story, ACCOUNT, "WEB-7", "40.00")
    spend_and_cancel(story, ACCOUNT, "WEB-8", "15.00", cancelled=True)
    model = InMemoryReadModel(RefundLedger())
    model.apply(story.events)
    assert lines_of(model, "WEB-7") == [
        ("store_credit_spent", "store_credit_liability", "40.00", "0"),
        ("store_credit_spent", "store_credit_redeemed", "0", "40.00"),
    ]
    assert lines_of(model, "WEB-8") == [
        ("store_credit_spent", "store_credit_liability", "15.00", "0"),
        ("store_credit_spent", "store_credit_redeemed", "0", "15.00"),
        ("store_credit_restored", "store_credit_redeemed", "15.00", "0"),
        ("store_credit_restored", "store_credit_liability", "0", "15.00"),
    ]
    liability = [
        b for b in model.rows("rm_ledger_balances") if b["account"] == "store_credit_liability"
    ]
    # Issued 55.00, spent 40.00 for good: 15.00 still owed to the customer.
    assert sum((b["credit"] - b["debit"] for b in liability), Decimal(0)) == Decimal("15.00")
    assert not any(r["refund_id"] in ("WEB-7", "WEB-8") for r in model.rows("rm_refunds"))
    again = InMemoryReadModel(RefundLedger())
    again.apply(story.events)
    again.apply(story.events[2:])  # redelivered
    assert again.tables == model.tables
