"""What the demo shows once the day is played: the read models, the API's figures, the
reasons chart and a rebuild check; and ``play``, which runs it all.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from adapters.driven.kafka.deadletters.reading import count_by_code
from adapters.driven.readmodels.queries import unbalanced_refunds
from adapters.driven.readmodels.rebuild import differences, rebuild, snapshot
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driving.api import ApiSettings, create_api
from adapters.driving.api.serving import served
from adapters.driving.demo.cast import HISTORY, People, Report
from adapters.driving.demo.clients import PRINCIPALS, Caller, demo_keys
from adapters.driving.demo.scenario import Demo
from adapters.driving.demo.simulation import simulation_line
from adapters.driving.demo.stage import wait_for_projections
from domain.application import ReturnsService
from projections import default_projections


def summary(
    database_url: str, bootstrap: str, report: Report, out_dir: Path, analytics: Caller
) -> list[str]:
    """Print what the read models now say; write the reasons-by-supplier chart."""
    lines = ["", "== Summary"]
    lines.append(
        f"orders placed: {report.orders}; RMAs requested: {len(report.rmas)}; "
        f"blind parcels: {report.blind}; store returns: {report.store_returns}"
    )
    lines.append(
        "refused by policy: "
        + (", ".join(f"{code} {n}" for code, n in sorted(report.refused.items())) or "none")
    )
    lines += api_lines(database_url, report, analytics)
    if report.journeys:
        lines.append("workflows played:")
        lines += [f"  {journey}" for journey in report.journeys]
    with psycopg.connect(database_url) as conn:
        stock = conn.execute(
            "SELECT sku, location_id, bucket, sum(delta) FROM rm_stock_movements"
            " WHERE kind IN ('inspection', 'repaired', 'beyond_repair')"
            " GROUP BY 1, 2, 3 HAVING sum(delta) <> 0 ORDER BY 4 DESC, 1 LIMIT 8"
        ).fetchall()
        lines.append("stock moved by returns (sku, location, bucket, units):")
        lines += [
            f"  {sku:<15} {loc:<8} {bucket:<19} {int(units):+d}"
            for sku, loc, bucket, units in stock
        ]
        debit, credit = conn.execute(
            "SELECT coalesce(sum(debit), 0), coalesce(sum(credit), 0) FROM rm_ledger_lines"
        ).fetchone() or (0, 0)
        unbalanced = unbalanced_refunds(conn)
        lines.append(
            f"refund ledger: debits {debit} = credits {credit}; unbalanced refunds: "
            f"{len(unbalanced)}"
        )
        refunds = conn.execute(
            "SELECT status, count(*), coalesce(sum(requested), 0) FROM rm_refunds GROUP BY 1"
            " ORDER BY 1"
        ).fetchall()
        lines += [f"  refunds {status:<10} {n:>4}  {amount} EUR" for status, n, amount in refunds]
        reasons = conn.execute(
            "SELECT supplier, reason, sum(returns) FROM rm_return_reasons GROUP BY 1, 2"
            " ORDER BY 3 DESC, 1, 2 LIMIT 8"
        ).fetchall()
        lines.append("top return reasons by supplier:")
        lines += [f"  {supplier:<11} {reason:<22} {n}" for supplier, reason, n in reasons]
        returners = conn.execute(
            "SELECT customer_id, returns, return_rate FROM rm_customers WHERE serial_returner"
            " ORDER BY returns DESC LIMIT 5"
        ).fetchall()
        lines.append(
            "serial returners: "
            + (", ".join(f"{c} ({r} returns, rate {rate})" for c, r, rate in returners) or "none")
        )
        chart_rows = conn.execute(
            "SELECT supplier, reason, sum(returns) FROM rm_return_reasons GROUP BY 1, 2"
        ).fetchall()
    codes = count_by_code(bootstrap)
    lines.append(
        f"dead-lettered inbound messages: {sum(codes.values())} ("
        + ", ".join(f"{code} {n}" for code, n in sorted(codes.items()))
        + f"; the demo published {report.malformed} malformed ones)"
    )
    chart = out_dir / "returns-by-reason-and-supplier.html"
    chart.write_text(reasons_chart(chart_rows))
    lines.append(f"chart: {chart}")
    lines.append(f"played in {report.seconds:.1f} s")
    return lines


def api_lines(database_url: str, report: Report, analytics: Caller) -> list[str]:
    """What people did through the API, the audit trail it left, and a read-side figure
    read back through it as analytics would."""
    reviewed = ", ".join(f"{v} {n}" for v, n in sorted(report.reviewed.items())) or "none"
    lines = [
        f"through the API at {report.api_url}:",
        f"  RMAs requested on the portal {report.portal_rmas}, by customer service "
        f"{report.cs_rmas}; held for review: {reviewed}; kept by the customer: {report.kept}",
        f"  blind parcels matched by customer service: {report.blind_matched}, at receipt by the"
        f" system: {report.blind_matched_at_receipt}, of {report.blind}; "
        f"failed refunds paid as store credit: {report.refunds_as_store_credit}; "
        f"retried POSTs answered with their first result: {report.replays}",
        "  calls: " + ", ".join(f"{call} x{n}" for call, n in sorted(report.calls.items())),
    ]
    # Every command records the acting key's principal as its events' actor. Earlier runs
    # in the same data directory used the same names: count this run's events only.
    with psycopg.connect(database_url) as conn:
        actors = conn.execute(
            "SELECT a, count(*) FROM (SELECT convert_from(state, 'UTF8')::jsonb"
            " #>> '{cause,actor}' AS a FROM oms_events WHERE notification_id > %s) e"
            " WHERE a = ANY(%s) GROUP BY a ORDER BY a",
            [report.first_position, list(PRINCIPALS.values())],
        ).fetchall()
    lines.append(
        "events recorded with an API key's principal as actor: "
        + (", ".join(f"{actor} {n}" for actor, n in actors) or "none")
    )
    reasons = analytics.get("/v1/analytics/return-reasons", by="reason", limit=6).body["items"]
    lines.append(
        "return reasons (GET /v1/analytics/return-reasons as analytics): "
        + ", ".join(f"{r['reason']} {r['returns']}" for r in reasons)
    )
    return lines


def reasons_chart(rows: list[tuple[str, str, int]]) -> str:
    """A self-contained HTML bar chart (inline SVG): no plotting library to install."""
    suppliers = sorted({r[0] for r in rows})
    reasons = sorted({r[1] for r in rows})
    counts = {(s, r): int(n) for s, r, n in rows}
    top = max(counts.values(), default=1)
    palette = [
        "#4e79a7",
        "#f28e2b",
        "#e15759",
        "#76b7b2",
        "#59a14f",
        "#edc948",
        "#b07aa1",
        "#ff9da7",
        "#9c755f",
        "#bab0ac",
        "#86bcb6",
    ]
    bar_h, gap = 14, 26
    height = len(suppliers) * (len(reasons) * bar_h + gap) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" '
        'font-family="sans-serif" font-size="11">'
    ]
    y = 20
    for supplier in suppliers:
        parts.append(f'<text x="0" y="{y}" font-weight="bold">{html.escape(supplier)}</text>')
        y += 6
        for index, reason in enumerate(reasons):
            n = counts.get((supplier, reason), 0)
            if not n:
                continue
            width = 420 * n // top
            color = palette[index % len(palette)]
            parts.append(
                f'<rect x="170" y="{y}" width="{width}" height="{bar_h - 3}" '
                f'fill="{color}"/><text x="0" y="{y + 10}">{html.escape(reason)}</text>'
                f'<text x="{175 + width}" y="{y + 10}">{n}</text>'
            )
            y += bar_h
        y += gap
    parts.append("</svg>")
    return (
        "<!doctype html><meta charset='utf-8'><title>Returns by reason and supplier</title>"
        "<h1>Returns by reason and supplier</h1>" + "".join(parts)
    )


def event_store_head(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM oms_events").fetchone()
    return int(row[0]) if row else 0


def rebuild_check(database_url: str) -> list[str]:
    """Replay the event store into fresh tables and compare with the live read models."""
    problems: list[str] = []
    store = ReadModelStore(database_url, default_projections())
    try:
        for projection in default_projections():
            rebuild(projection, database_url, switch=False)
            live = snapshot(store.connection, projection)
            rebuilt = snapshot(store.connection, projection, "_rebuild")
            problems += [f"{projection.name}: {d}" for d in differences(live, rebuilt)]
    finally:
        store.close()
    return problems


def play(
    service: ReturnsService,
    database_url: str,
    bootstrap: str,
    *,
    orders: int,
    seed: int,
    quiet: bool,
    out_dir: Path,
) -> int:
    """Serve the API on ``service``, play the day, summarise, check a rebuild."""
    keys, plain = demo_keys()
    with served(create_api(service, database_url, ApiSettings(), keys)) as api_url:
        report = Report(api_url=api_url, first_position=event_store_head(database_url))
        print(f"API:        {report.api_url} (keys for {', '.join(PRINCIPALS.values())})")
        people = People(
            *(Caller(report.api_url, plain[role], role, report.calls) for role in PRINCIPALS)
        )
        began = datetime.now(UTC)
        try:
            Demo(
                people,
                database_url,
                bootstrap,
                orders=orders,
                seed=seed,
                quiet=quiet,
                report=report,
            ).run()
            wait_for_projections(database_url)
            for line in summary(database_url, bootstrap, report, out_dir, people.analytics):
                print(line)
            print(simulation_line(service, began - HISTORY))
        finally:
            people.close()
    problems = rebuild_check(database_url)
    if problems:
        print("REBUILD DIFFERS from the live read models:")
        for problem in problems[:20]:
            print("  " + problem)
        return 1
    print(
        "rebuild check: a replay of the event store equals the live read models"
        f" ({len(default_projections())} projections)"
    )
    return 0
