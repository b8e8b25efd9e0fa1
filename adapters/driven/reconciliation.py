"""Reconciliation with the payment providers: the day's figures from the refund ledger, and
a provider's settlement file matched line by line.

A provider is the payment method a refund goes back through (the ledger's
``refunds_payable:<method>`` and ``cash:<method>`` accounts): card, paypal, bnpl,
gift_card, and store_credit for refunds to a store-credit payment (no cash moves there).

The daily figures read the read models only (``rm_ledger_lines``, ``rm_refund_discrepancies``),
so they trail the event store by the projections' lag. An import compares each line through
the domain (``ReconcileSettlement``): the Return aggregate records a disagreement as a
discrepancy once, so importing the same file again records nothing; it writes nothing else.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from domain.application import Ctx, ReturnsService
from domain.commands import ReconcileSettlement
from domain.currencies import MINOR_UNITS
from domain.errors import DomainError, NotFound
from domain.events import Cause
from domain.returns.reconciliation import MISSING_IN_FILE, UNKNOWN_REFUND
from domain.values import Money

Rows = Callable[[str, dict[str, Any]], list[dict[str, Any]]]
"""Runs a query on the read models: rows with decimals and dates as strings."""

# The settlement file's columns: these are required, ``payment_id`` and ``status`` optional.
REQUIRED_COLUMNS = ("provider_reference", "refund_id", "amount", "currency", "settled_at")
OPTIONAL_COLUMNS = ("payment_id", "status")
STATUSES = ("settled", "failed")
MAX_LINES = 100_000


def decimal_text(value: Any, currency: str) -> str:
    """An amount as a decimal string at its currency's scale (``0`` -> ``0.00`` EUR)."""
    amount = Decimal(str(value or 0))
    exponent = MINOR_UNITS.get(currency)
    return str(amount if exponent is None else amount.quantize(Decimal(1).scaleb(-exponent)))


# ---------------------------------------------------------------- the daily figures
DAY_SQL = """
SELECT split_part(account, ':', 2) AS provider, currency,
  count(DISTINCT refund_id) FILTER (WHERE entry = 'requested' AND day = %(day)s) AS requested_n,
  coalesce(sum(credit) FILTER (WHERE entry = 'requested' AND day = %(day)s), 0) AS requested,
  count(DISTINCT refund_id) FILTER (WHERE entry = 'settled' AND day = %(day)s) AS settled_n,
  coalesce(sum(debit) FILTER (WHERE entry = 'settled' AND day = %(day)s), 0) AS settled,
  count(DISTINCT refund_id) FILTER (WHERE entry = 'failed' AND day = %(day)s) AS failed_n,
  coalesce(sum(debit) FILTER (WHERE entry = 'failed' AND day = %(day)s), 0) AS failed,
  sum(credit - debit) AS outstanding
FROM rm_ledger_lines
WHERE account LIKE 'refunds\\_payable:%%' AND day <= %(day)s
  AND (%(provider)s::text IS NULL OR account = 'refunds_payable:' || %(provider)s::text)
GROUP BY 1, 2
"""
# Refunds still owed to the customer at the end of the day, per provider and currency.
OUTSTANDING_SQL = """
SELECT provider, currency, count(*) AS outstanding_n FROM (
  SELECT split_part(account, ':', 2) AS provider, currency, refund_id
  FROM rm_ledger_lines
  WHERE account LIKE 'refunds\\_payable:%%' AND day <= %(day)s
    AND (%(provider)s::text IS NULL OR account = 'refunds_payable:' || %(provider)s::text)
  GROUP BY 1, 2, 3 HAVING sum(credit - debit) <> 0) AS owed
GROUP BY 1, 2
"""
DISCREPANCIES_SQL = """
SELECT provider, currency, count(*) AS discrepancies_n,
  coalesce(sum(amount), 0) AS claimed, coalesce(sum(expected), 0) AS expected
FROM rm_refund_discrepancies
WHERE day = %(day)s AND (%(provider)s::text IS NULL OR provider = %(provider)s::text)
GROUP BY 1, 2
"""


def daily_reconciliation(rows: Rows, day: date, provider: str | None = None) -> dict[str, Any]:
    """Per provider and currency: refunds requested, settled and failed on ``day``, what
    is outstanding at its end, and the discrepancies recorded that day (counts, and
    amounts as decimal strings: what the provider claimed and what was expected)."""
    params: dict[str, Any] = {"day": day, "provider": provider}
    figures: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(row: dict[str, Any]) -> dict[str, Any]:
        key = (str(row["provider"]), str(row["currency"]))
        if key not in figures:
            figures[key] = {"provider": key[0], "currency": key[1]}
        return figures[key]

    for row in rows(DAY_SQL, params):
        cur = row["currency"]
        entry(row).update(
            requested={"count": row["requested_n"], "amount": decimal_text(row["requested"], cur)},
            settled={"count": row["settled_n"], "amount": decimal_text(row["settled"], cur)},
            failed={"count": row["failed_n"], "amount": decimal_text(row["failed"], cur)},
            outstanding={"count": 0, "amount": decimal_text(row["outstanding"], cur)},
        )
    for row in rows(OUTSTANDING_SQL, params):
        entry(row).setdefault("outstanding", {})["count"] = row["outstanding_n"]
    for row in rows(DISCREPANCIES_SQL, params):
        cur = row["currency"]
        entry(row)["discrepancies"] = {
            "count": row["discrepancies_n"],
            "claimed": decimal_text(row["claimed"], cur),
            "expected": decimal_text(row["expected"], cur),
        }
    out = []
    for (_, currency), found in sorted(figures.items()):
        zero = decimal_text(0, currency)
        for name in ("requested", "settled", "failed", "outstanding"):
            found.setdefault(name, {"count": 0, "amount": zero})
        found.setdefault("discrepancies", {"count": 0, "claimed": zero, "expected": zero})
        out.append(found)
    return {"day": day.isoformat(), "provider": provider, "providers": out}


# ---------------------------------------------------------------- the settlement file
class SettlementFileError(ValueError):
    """A malformed settlement file: the line (1 is the header) and why."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class SettlementLine:
    line: int
    provider_reference: str
    refund_id: str
    payment_id: str | None
    amount: Money
    settled_at: datetime
    status: Literal["settled", "failed"]


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        if "T" in text or " " in text:
            raise ValueError("a time needs its offset (2026-12-04T10:00:00Z)")
        moment = moment.replace(tzinfo=UTC)  # a bare date: that UTC day
    return moment


def parse_settlement_file(text: str) -> list[SettlementLine]:
    """The lines of a settlement file (CSV with a header naming the columns, any order);
    ``SettlementFileError`` names the first malformed line."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise SettlementFileError(1, "the file is empty: a header line is required") from None
    except csv.Error as error:
        raise SettlementFileError(1, f"not CSV: {error}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise SettlementFileError(
            1,
            f"the header lacks {', '.join(missing)}; columns: "
            f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}",
        )
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown or len(set(header)) != len(header):
        raise SettlementFileError(1, f"unknown or repeated columns: {', '.join(unknown or header)}")
    lines: list[SettlementLine] = []
    seen: dict[tuple[str, str | None, str], int] = {}
    number = 1
    try:
        for number, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue  # a blank line (often the last)
            if len(values) != len(header):
                raise SettlementFileError(
                    number, f"{len(values)} fields, the header has {len(header)}"
                )
            if len(lines) >= MAX_LINES:
                raise SettlementFileError(number, f"more than {MAX_LINES} lines: split the file")
            lines.append(_line(number, dict(zip(header, (v.strip() for v in values), strict=True))))
            key = (lines[-1].refund_id, lines[-1].payment_id, lines[-1].provider_reference)
            if key in seen:
                raise SettlementFileError(number, f"the same settlement as line {seen[key]}")
            seen[key] = number
    except csv.Error as error:
        raise SettlementFileError(number, f"not CSV: {error}") from None
    return lines


def _line(number: int, field: dict[str, str]) -> SettlementLine:
    for name in REQUIRED_COLUMNS:
        if not field[name]:
            raise SettlementFileError(number, f"{name} is empty")
        if "\x00" in field[name] or len(field[name]) > 200:
            raise SettlementFileError(number, f"{name} is not a short text")
    try:
        if not Decimal(field["amount"]).is_finite():
            raise InvalidOperation
        amount = Money.of(field["amount"], field["currency"].upper())
    except (InvalidOperation, DomainError, ValueError) as error:
        raise SettlementFileError(number, f"amount: {error}") from None
    try:
        settled_at = _moment(field["settled_at"])
    except ValueError as error:
        raise SettlementFileError(number, f"settled_at is not an ISO 8601 time: {error}") from None
    status = (field.get("status") or "settled").lower()
    if status not in STATUSES:
        raise SettlementFileError(number, f"status {status!r}: one of {', '.join(STATUSES)}")
    return SettlementLine(
        line=number,
        provider_reference=field["provider_reference"],
        refund_id=field["refund_id"],
        payment_id=field.get("payment_id") or None,
        amount=amount,
        settled_at=settled_at,
        status="failed" if status == "failed" else "settled",
    )


# ---------------------------------------------------------------- the import
SETTLED_SQL = """
SELECT refund_id, currency, sum(debit) AS amount, min(day) AS day
FROM rm_ledger_lines
WHERE entry = 'settled' AND account = 'refunds_payable:' || %(provider)s::text
  AND day = ANY(%(days)s)
GROUP BY refund_id, currency ORDER BY refund_id
"""


@dataclass
class ImportReport:
    provider: str
    days: list[date]
    lines: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for item in (*self.lines, *self.missing):
            counts[item["verdict"]] = counts.get(item["verdict"], 0) + 1
        return {
            "provider": self.provider,
            "days": [d.isoformat() for d in self.days],
            "counts": dict(sorted(counts.items())),
            "discrepancies_recorded": sum(1 for i in self.lines if i.get("recorded")),
            "lines": self.lines,
            "missing_in_file": self.missing,
        }


def import_settlements(
    service: ReturnsService,
    rows: Rows,
    provider: str,
    lines: Iterable[SettlementLine],
    cause: Cause,
    days: list[date] | None = None,
) -> ImportReport:
    """Match each line against its refund (through the domain, which records a
    disagreement once) and list the refunds the ledger settled through ``provider`` on
    the file's days (``days``, or the UTC days of its ``settled_at``) that it lacks."""
    lines = list(lines)
    days = sorted(set(days or (ln.settled_at.astimezone(UTC).date() for ln in lines)))
    report = ImportReport(provider, days)
    for ln in lines:
        item: dict[str, Any] = {
            "line": ln.line,
            "refund_id": ln.refund_id,
            "payment_id": ln.payment_id,
            "provider_reference": ln.provider_reference,
            "amount": str(ln.amount.amount),
            "currency": ln.amount.currency,
            "status": ln.status,
        }
        command = ReconcileSettlement(
            refund_id=ln.refund_id,
            provider=provider,
            provider_reference=ln.provider_reference,
            amount=ln.amount,
            status=ln.status,
            payment_id=ln.payment_id,
        )
        try:
            before = _discrepancies(service, ln.refund_id)
            outcome = service.run(Ctx(cause), command)
        except NotFound:
            item["verdict"] = UNKNOWN_REFUND
            report.lines.append(item)
            continue
        expected = outcome.amount
        item.update(
            verdict=outcome.code,
            expected=None if expected is None else str(expected.amount),
            reason=outcome.message,
            rma_number=outcome.rma_number,
            recorded=_discrepancies(service, ln.refund_id) > before,
        )
        report.lines.append(item)
    in_file = {ln.refund_id for ln in lines}
    for row in rows(SETTLED_SQL, {"provider": provider, "days": days}):
        if row["refund_id"] not in in_file:
            report.missing.append(
                {
                    "verdict": MISSING_IN_FILE,
                    "refund_id": row["refund_id"],
                    "amount": decimal_text(row["amount"], row["currency"]),
                    "currency": row["currency"],
                    "day": row["day"],
                }
            )
    return report


def _discrepancies(service: ReturnsService, refund_id: str) -> int:
    """How many discrepancies the refund has on record (a new one: this line recorded it)."""
    return_id = service.lookups.return_id_for_refund(refund_id)
    if return_id is None:
        return 0
    try:
        return len(service.get_return(return_id).refund(refund_id).discrepancies)
    except DomainError:
        return 0


def cause_for(actor: str, source: str) -> Cause:
    return Cause(actor=actor[:200], source=source[:200], correlation_id=str(uuid.uuid4()))
