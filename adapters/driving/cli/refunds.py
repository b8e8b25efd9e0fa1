"""``rma refunds``: refunds waiting for the payment provider, listed or sent again."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from adapters.settings import Settings

if TYPE_CHECKING:
    pass


def add_refunds_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    refunds = sub.add_parser(
        "refunds", help="refunds waiting for the payment provider: list them, send them again"
    )
    actions = refunds.add_subparsers(dest="refunds_action", required=True)
    pending = actions.add_parser("pending", help="list refunds the provider has not answered")
    pending.add_argument(
        "--older-than", type=float, default=0, metavar="S", help="requested at least S s ago"
    )
    resend = actions.add_parser(
        "resend", help="have the integrations worker send pending refunds again (same ids)"
    )
    chosen = resend.add_mutually_exclusive_group(required=True)
    chosen.add_argument("refund_ids", nargs="*", default=[], metavar="REFUND_ID")
    chosen.add_argument(
        "--all-older-than", type=float, metavar="S", help="every pending refund requested S s ago"
    )


def run_refunds(settings: Settings, args: argparse.Namespace) -> int:
    import getpass
    from datetime import UTC, datetime

    from adapters.driven.eventstore import create_service
    from adapters.driven.refunds import RefundDispatches
    from adapters.driving.stack import postgres

    with postgres(settings) as url:
        service = create_service(url, pool_size=2)
        try:
            dispatches = RefundDispatches(service)
            if args.refunds_action == "pending":
                now = datetime.now(UTC)
                print("refund_id\trma_number\tamount\tage_s\tattempts\tlast_sent")
                for p in dispatches.pending(args.older_than, limit=100_000):
                    age = f"{(now - p.requested_at).total_seconds():.0f}" if p.requested_at else "?"
                    amount = f"{p.amount} {p.currency}" if p.amount is not None else "?"
                    last = p.last_dispatched_at.isoformat() if p.last_dispatched_at else "-"
                    print(
                        f"{p.refund_id}\t{p.rma_number or '-'}\t{amount}\t{age}"
                        f"\t{p.attempts}\t{last}"
                    )
                return 0
            by = f"cli/{getpass.getuser()}"
            if args.all_older_than is not None:
                asked = dispatches.request_resend(by=by, older_than_s=args.all_older_than)
            else:
                asked = dispatches.request_resend(by=by, refund_ids=args.refund_ids)
            for refund_id in asked:
                print(f"{refund_id}: to be sent again by the integrations worker")
            missing = set(args.refund_ids) - set(asked)
            for refund_id in sorted(missing):
                print(f"{refund_id}: not pending (unknown, settled or failed)", file=sys.stderr)
            return 1 if missing else 0
        finally:
            service.close()
