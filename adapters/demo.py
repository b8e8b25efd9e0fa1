"""The demo: a short day of a shop's returns, driven through the application service.

Everything runs for real against PostgreSQL (embedded by default). Time is simulated by
passing explicit ``at`` moments, so windows and expiries play out without waiting.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.application import Ctx, Outcome, ReturnsService
from domain.errors import DomainError
from domain.events import Cause, FulfilledLine, InspectedItem, OrderLine, Payment, ReceivedItem
from domain.returns import CounterCheck, RequestedLine
from domain.values import (
    Channel,
    Condition,
    Disposition,
    Money,
    PaymentMethod,
    ReasonCode,
    RefundMethod,
    ReturnChannel,
)

CATALOGUE = [
    ("SHOE-RUN-42", "Running shoe", "39.90", "Stride Ltd", "shoes", None),
    ("JACKET-RAIN-M", "Rain jacket", "89.00", "Northwind", "apparel", None),
    ("HEADPHONES-X1", "Headphones X1", "129.00", "SoundCo", "electronics", 24),
    ("SOCKS-3P", "Socks, 3 pairs", "9.90", "Stride Ltd", "apparel", None),
    ("GAME-KEY-01", "Game licence", "59.00", "PixelWorks", "software", None),
    ("KETTLE-2L", "Kettle 2 l", "34.50", "HomeGoods", "kitchen", 24),
]


@dataclass
class DemoReport:
    orders: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    refunded: Decimal = Decimal(0)
    store_credit: Decimal = Decimal(0)
    events: int = 0
    seconds: float = 0.0


class Demo:
    def __init__(self, service: ReturnsService, *, orders: int, seed: int, quiet: bool) -> None:
        self.service = service
        self.order_count = orders
        self.random = random.Random(seed)
        self.quiet = quiet
        self.run_id = uuid.uuid4().hex[:6].upper()
        self.start = datetime.now(UTC) - timedelta(days=60)
        self.report = DemoReport()

    def say(self, line: str) -> None:
        if not self.quiet:
            # Clear a progress bar drawn on the same terminal line first.
            prefix = "\r\x1b[K" if sys.stdout.isatty() else ""
            print(prefix + line, flush=True)

    def ctx(self, at: datetime, actor: str, source: str) -> Ctx:
        return Ctx(Cause(actor=actor, source=source, correlation_id=str(uuid.uuid4())), at=at)

    def progress(self, done: int, total: int, label: str) -> None:
        if not sys.stderr.isatty() and done != total and done % max(1, total // 10):
            return
        if not self.quiet and not sys.stderr.isatty():
            sys.stderr.write(f"{label}: {done}/{total}\n")
            return
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r{label:<18} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    # ------------------------------------------------------------ the day
    def run(self) -> DemoReport:
        began = time.perf_counter()
        numbers = self.place_orders()
        self.customer_returns(numbers)
        self.blind_returns(numbers)
        self.store_returns(numbers)
        self.report.seconds = time.perf_counter() - began
        self.report.events = self.service.recorder.max_notification_id() or 0
        return self.report

    def place_orders(self) -> list[str]:
        numbers = []
        for index in range(self.order_count):
            channel = self.random.choice(
                [Channel.WEB, Channel.WEB, Channel.CLICK_AND_COLLECT, Channel.STORE]
            )
            at = self.start + timedelta(hours=index * 2)
            number = f"{channel.value[:3].upper()}-{self.run_id}-{index:04d}"
            picks = self.random.sample(CATALOGUE, k=self.random.randint(1, 3))
            lines = []
            for line_no, (sku, name, price, supplier, category, warranty) in enumerate(picks, 1):
                quantity = self.random.randint(1, 2)
                serials = (
                    tuple(f"SN-{self.run_id}-{index}-{line_no}-{q}" for q in range(quantity))
                    if category == "electronics"
                    else ()
                )
                lines.append(
                    OrderLine(
                        line_no=line_no,
                        sku=sku,
                        name=name,
                        quantity=quantity,
                        unit_price=Money.of(price, "EUR"),
                        serials=serials,
                        supplier=supplier,
                        category=category,
                        warranty_months=warranty,
                    )
                )
            shipping = Money.of("0.00" if channel is Channel.STORE else "4.90", "EUR")
            total = shipping
            for line in lines:
                total = total + line.unit_price.times(line.quantity)
            payments = self.split_payment(total)
            source = "pos/STORE-7" if channel is Channel.STORE else "commerce/web"
            ctx = self.ctx(at, "commerce-platform", source)
            self.service.place_order(
                ctx,
                order_number=number,
                customer_id=f"C{self.random.randint(1, 40):03d}",
                customer_email=None,
                channel=channel,
                lines=lines,
                payments=payments,
                shipping=shipping,
                store_id="STORE-7" if channel is Channel.STORE else None,
            )
            if channel is not Channel.STORE:
                wms = self.ctx(at + timedelta(hours=6), "wms", "wms/WH-1")
                self.service.fulfil_order(
                    wms,
                    order_number=number,
                    location_id="WH-1",
                    lines=[
                        FulfilledLine(line_no=ln.line_no, quantity=ln.quantity, serials=ln.serials)
                        for ln in lines
                    ],
                )
                carrier = self.ctx(at + timedelta(days=2), "carrier", "carrier/track")
                self.service.deliver_order(carrier, order_number=number)
            numbers.append(number)
            self.report.orders += 1
            self.progress(index + 1, self.order_count, "orders placed")
        return numbers

    def split_payment(self, total: Money) -> list[Payment]:
        if self.random.random() < 0.3 and total.amount > 20:
            gift = Money.of("20.00", "EUR")
            return [
                Payment(payment_id="gift", method=PaymentMethod.GIFT_CARD, amount=gift),
                Payment(payment_id="card", method=PaymentMethod.CARD, amount=total - gift),
            ]
        method = self.random.choice([PaymentMethod.CARD, PaymentMethod.PAYPAL, PaymentMethod.BNPL])
        return [Payment(payment_id="p1", method=method, amount=total)]

    def customer_returns(self, numbers: list[str]) -> None:
        chosen = [n for n in numbers if self.random.random() < 0.45]
        for done, number in enumerate(chosen, 1):
            order = self.service.get_order(number)
            line = self.random.choice(list(order.state.lines.values()))
            reason = self.random.choice(list(ReasonCode))
            late = self.random.random() < 0.15
            at = (order.reference_date() or self.start) + timedelta(days=45 if late else 5)
            method = self.random.choice(
                [RefundMethod.ORIGINAL_PAYMENT] * 6
                + [RefundMethod.STORE_CREDIT, RefundMethod.EXCHANGE]
            )
            channel = self.random.choice([ReturnChannel.PORTAL, ReturnChannel.CUSTOMER_SERVICE])
            serial = line.serials[0] if line.serials else None
            try:
                outcome = self.service.request_return(
                    self.ctx(
                        at,
                        "customer" if channel is ReturnChannel.PORTAL else "cs-agent-3",
                        channel.value,
                    ),
                    order_number=number,
                    channel=channel,
                    refund_method=method,
                    lines=[
                        RequestedLine(
                            line_no=line.line_no, quantity=1, reason=reason, serial=serial
                        )
                    ],
                    comment="demo",
                )
            except DomainError as refused:
                self.report.refused[refused.code] += 1
                continue
            self.report.outcomes[outcome.status] += 1
            self.say(
                f"{number}: {line.sku} ({reason.value}) -> {outcome.status}"
                f"{' ' + outcome.rma_number if outcome.rma_number else ''}"
                f"{' [' + outcome.code + ']' if outcome.code else ''}"
            )
            if outcome.status == "authorized" and outcome.rma_number:
                self.ship_back(outcome, line.sku, serial, at)
            self.progress(done, len(chosen), "customer returns")

    def ship_back(self, outcome: Outcome, sku: str, serial: str | None, at: datetime) -> None:
        assert outcome.rma_number is not None
        if self.random.random() < 0.1:
            return  # never shipped: expires later
        receipt = f"REC-{self.run_id}-{outcome.aggregate_id.hex[:8]}"
        wms = self.ctx(at + timedelta(days=3), "wms", "wms/WH-1")
        self.service.receive_parcel(
            wms,
            receipt_id=receipt,
            warehouse_id="WH-1",
            rma_number=outcome.rma_number,
            tracking_number=f"TRK{self.random.randint(10**8, 10**9)}",
            items=[ReceivedItem(sku=sku, quantity=1, serial=serial)],
        )
        condition = self.random.choice(
            [
                Condition.NEW,
                Condition.NEW,
                Condition.RESELLABLE,
                Condition.DAMAGED,
                Condition.DEFECTIVE,
            ]
        )
        disposition = {
            Condition.NEW: Disposition.RESTOCK,
            Condition.RESELLABLE: Disposition.RESTOCK,
            Condition.DAMAGED: Disposition.SCRAP,
            Condition.DEFECTIVE: Disposition.REPAIR,
        }[condition]
        inspected = self.service.inspect_items(
            self.ctx(at + timedelta(days=4), "wms", "wms/WH-1"),
            rma_number=outcome.rma_number,
            receipt_id=receipt,
            items=[
                InspectedItem(
                    sku=sku,
                    quantity=1,
                    serial=serial,
                    condition=condition,
                    disposition=disposition,
                    location_id="WH-1",
                )
            ],
        )
        self.settle(inspected, at + timedelta(days=5))

    def settle(self, inspected: Outcome, at: datetime) -> None:
        if inspected.refund_id and inspected.amount:
            psp = self.ctx(at, "psp-sandbox", "psp/sandbox")
            if self.random.random() < 0.08:
                self.service.fail_refund(psp, refund_id=inspected.refund_id, reason="card expired")
                retried = self.service.retry_refund(
                    self.ctx(at, "cs-agent-1", "customer_service"),
                    return_id=inspected.aggregate_id,
                    as_store_credit=True,
                )
                self.report.store_credit += retried.amount.amount if retried.amount else 0
                return
            self.service.settle_refund(
                psp,
                refund_id=inspected.refund_id,
                provider_reference=f"psp-{uuid.uuid4().hex[:8]}",
                amount=inspected.amount,
            )
            self.report.refunded += inspected.amount.amount
        elif inspected.amount:
            self.report.store_credit += inspected.amount.amount

    def blind_returns(self, numbers: list[str]) -> None:
        for number in self.random.sample(numbers, k=max(1, len(numbers) // 20)):
            order = self.service.get_order(number)
            line = next(iter(order.state.lines.values()))
            at = (order.reference_date() or self.start) + timedelta(days=10)
            receipt = f"BLIND-{self.run_id}-{number}"
            blind = self.service.receive_parcel(
                self.ctx(at, "wms", "wms/WH-1"),
                receipt_id=receipt,
                warehouse_id="WH-1",
                rma_number=None,
                tracking_number=None,
                items=[ReceivedItem(sku=line.sku, quantity=1)],
            )
            try:
                matched = self.service.match_blind_return(
                    self.ctx(at + timedelta(days=1), "cs-agent-2", "customer_service"),
                    return_id=blind.aggregate_id,
                    order_number=number,
                    matched_by="order_id",
                    lines=[
                        RequestedLine(
                            line_no=line.line_no, quantity=1, reason=ReasonCode.CHANGED_MIND
                        )
                    ],
                )
            except DomainError as refused:
                self.say(f"blind parcel {receipt} stays open: {refused.message}")
                continue
            assert matched.rma_number is not None
            inspected = self.service.inspect_items(
                self.ctx(at + timedelta(days=1), "wms", "wms/WH-1"),
                rma_number=matched.rma_number,
                receipt_id=receipt,
                items=[
                    InspectedItem(
                        sku=line.sku,
                        quantity=1,
                        condition=Condition.NEW,
                        disposition=Disposition.RESTOCK,
                        location_id="WH-1",
                    )
                ],
            )
            self.say(
                f"blind parcel {receipt} matched to {number} as {matched.rma_number}, "
                f"refund {inspected.amount} after the restocking fee"
            )
            self.report.outcomes["blind_matched"] += 1
            self.settle(inspected, at + timedelta(days=2))

    def store_returns(self, numbers: list[str]) -> None:
        web = [n for n in numbers if not n.startswith("STO")]
        for index, number in enumerate(self.random.sample(web, k=max(1, len(web) // 15))):
            order = self.service.get_order(number)
            free = order.returnable_quantities()
            line = next((ln for ln in order.state.lines.values() if free.get(ln.line_no)), None)
            if line is None:
                continue
            at = (order.reference_date() or self.start) + timedelta(days=7)
            serial = line.serials[-1] if line.serials else None
            try:
                outcome = self.service.record_in_store_return(
                    self.ctx(at, "staff-12", "pos/STORE-7"),
                    store_return_id=f"SR-{self.run_id}-{index}",
                    store_id="STORE-7",
                    staff_id="staff-12",
                    order_number=number,
                    lines=[
                        RequestedLine(
                            line_no=line.line_no,
                            quantity=1,
                            reason=ReasonCode.SIZE_TOO_LARGE,
                            serial=serial,
                        )
                    ],
                    checks=[
                        CounterCheck(
                            line_no=line.line_no,
                            quantity=1,
                            serial=serial,
                            condition=Condition.NEW,
                            disposition=Disposition.RESTOCK,
                        )
                    ],
                )
            except DomainError as refused:
                self.report.refused[refused.code] += 1
                self.say(f"store return of {number} refused at the counter: {refused.message}")
                continue
            self.say(
                f"store return of {number} ({line.sku}) at STORE-7 -> {outcome.status} "
                f"{outcome.rma_number}"
            )
            self.report.outcomes["store_return"] += 1
            self.settle(outcome, at)


def print_summary(report: DemoReport) -> None:
    print("\n== Summary")
    print(f"orders placed: {report.orders}")
    for status, count in sorted(report.outcomes.items()):
        print(f"  {status:<22} {count}")
    for code, count in sorted(report.refused.items()):
        print(f"  refused: {code:<13} {count}")
    print(f"refunded to original payments: {report.refunded} EUR")
    print(f"issued as store credit:       {report.store_credit} EUR")
    rate = report.events / report.seconds if report.seconds else 0
    print(
        f"events in the store: {report.events} ({report.seconds:.1f} s, {rate:.0f} events/s, "
        "one transaction per command)"
    )


def check_lookups_against_replay(service: ReturnsService, database_url: str) -> int:
    """Replay every return from the event store and compare with its lookup row.

    Returns the number of mismatches: the lookups are written in the events' transaction,
    so anything but zero is a bug.
    """
    import psycopg

    mismatches = 0
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT return_id, rma_number, status FROM oms_returns").fetchall()
    for return_id, rma_number, status in rows:
        replayed = service.get_return(return_id).state
        if (replayed.rma_number, replayed.status.value) != (rma_number, status):
            mismatches += 1
            print(
                f"MISMATCH {return_id}: lookup {rma_number}/{status}, "
                f"replay {replayed.rma_number}/{replayed.status.value}"
            )
    print(
        f"lookup rows checked against a replay of the event store: {len(rows)}, "
        f"mismatches: {mismatches}"
    )
    return mismatches
