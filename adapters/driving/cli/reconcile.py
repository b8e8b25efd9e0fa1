"""``rma reconcile``: the day's reconciliation per provider, and a provider's settlement
file imported (adapters/driven/reconciliation.py); both print JSON."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

from adapters.settings import Settings
from domain.values import PaymentMethod


def add_reconcile_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reconcile = sub.add_parser(
        "reconcile",
        help="the day's refunds per payment provider from the ledger; import a settlement file",
        description="rma reconcile --day D [--provider P]: requested, settled, failed,"
        " outstanding and discrepancies per provider and currency. rma reconcile import FILE"
        " --provider P: match a provider's settlement file (CSV) against the refunds.",
    )
    reconcile.add_argument("--day", type=date.fromisoformat, help="the UTC day, YYYY-MM-DD")
    reconcile.add_argument("--provider", help="one provider (payment method) only")
    actions = reconcile.add_subparsers(dest="reconcile_action")
    imported = actions.add_parser("import", help="match a provider's settlement file (CSV)")
    imported.add_argument("file", help="the CSV file ('-': standard input)")
    imported.add_argument(
        "--provider", required=True, choices=[m.value for m in PaymentMethod], dest="file_provider"
    )
    imported.add_argument(
        "--day",
        type=date.fromisoformat,
        action="append",
        dest="file_days",
        help="a day the file covers (repeatable; default: the days of its settled_at)",
    )


def run_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    import orjson
    import psycopg
    from psycopg.rows import dict_row

    from adapters.driven.eventstore import create_service
    from adapters.driven.readmodels.writer import jsonable
    from adapters.driven.reconciliation import (
        SettlementFileError,
        cause_for,
        daily_reconciliation,
        import_settlements,
        parse_settlement_file,
    )
    from adapters.driving.stack import postgres

    if args.reconcile_action is None and args.day is None:
        print("rma reconcile: give --day YYYY-MM-DD, or import FILE", file=sys.stderr)
        return 2
    text = ""
    if args.reconcile_action == "import":
        with sys.stdin if args.file == "-" else open(args.file, encoding="utf-8") as handle:
            text = handle.read()
        try:
            lines = parse_settlement_file(text)
        except SettlementFileError as error:
            print(f"{args.file}: {error}", file=sys.stderr)
            return 2
    with postgres(settings) as url, psycopg.connect(url, autocommit=True) as conn:

        def rows(query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                try:
                    cur.execute(query, params)
                except psycopg.errors.UndefinedTable:
                    return []  # the projections never ran here: nothing to reconcile
                return [jsonable(row) for row in cur.fetchall()]

        if args.reconcile_action is None:
            out: dict[str, Any] = daily_reconciliation(rows, args.day, args.provider)
        else:
            service = create_service(url, pool_size=2)
            try:
                cause = cause_for(f"cli/{getpass.getuser()}", "rma reconcile import")
                report = import_settlements(
                    service, rows, args.file_provider, lines, cause, args.file_days
                )
                out = report.as_dict()
            finally:
                service.close()
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
