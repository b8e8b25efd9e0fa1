"""The policy team's question at the end of the day: what would a stricter policy have
done to today's requests? ``rma policy simulate`` answers it from the event store,
writing nothing; the demo asks it of its own history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from adapters.driven.policy_simulation import simulate
from domain.application import ReturnsService
from domain.policy_file import parse_policy
from domain.policy_simulation import AUTHORIZED, HELD, REJECTED, SimulationReport

CANDIDATE = """
version = "demo-stricter"
[default]
window_days = 14
[review]
serial_returner_returns = 2
serial_returner_days = 90
"""


def refunds(report: SimulationReport, after: bool) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for tally in report.by_category.values():
        for currency, amount in (tally.refunds_after if after else tally.refunds_before).items():
            totals[currency] = totals.get(currency, Decimal(0)) + amount
    return totals


def simulation_line(service: ReturnsService, since: datetime) -> str:
    report = simulate(service, parse_policy(CANDIDATE, "demo candidate"), since)
    outcomes = ", ".join(
        f"{name.replace('_', ' ')} {report.outcomes_before.get(key, 0)} ->"
        f" {report.outcomes_after.get(key, 0)}"
        for key, name in ((AUTHORIZED, "authorized"), (HELD, "held"), (REJECTED, "rejected"))
    )
    before, after = refunds(report, False), refunds(report, True)
    zero = Decimal(0)
    money = ", ".join(
        f"{currency} {before.get(currency, zero):.2f} -> {after.get(currency, zero):.2f}"
        for currency in sorted(before.keys() | after.keys())
    )
    return (
        "policy simulation (rma policy simulate, writes nothing): a 14-day window and serial"
        f" returners held from 2 returns would have decided {len(report.request_changes)} of"
        f" the {report.requests} requests since {since.date().isoformat()} otherwise:"
        f" {outcomes}; refunds {money or 'none'}"
    )
