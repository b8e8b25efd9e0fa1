"""``rma parked``: inbound messages waiting for their order or RMA (adapters/driven/parking.py)."""

from __future__ import annotations

import argparse
import json

from adapters.settings import Settings


def add_parked_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parked = sub.add_parser("parked", help="inbound messages parked until their order or RMA comes")
    actions = parked.add_subparsers(dest="parked_action", required=True)
    listing = actions.add_parser("list", help="how many, the oldest, reasons, and each message")
    listing.add_argument("--limit", type=int, default=100, help="messages to list (default 100)")
    listing.add_argument("--json", action="store_true", help="one JSON document")


def run_parked(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.driven.eventstore import create_service
    from adapters.driven.parking import ParkedMessages
    from adapters.driving.stack import postgres

    with postgres(settings) as url:
        service = create_service(url, pool_size=2)
        try:
            parking = ParkedMessages(service)
            summary = parking.summary()
            messages = [
                {
                    "topic": p.topic,
                    "key": p.key.decode("utf-8", "replace") if p.key is not None else None,
                    "code": p.code,
                    "reason": p.reason,
                    "parked_at": p.parked_at.isoformat() if p.parked_at else None,
                    "parked_for_s": round(p.parked_for_s, 1),
                    "attempts": p.attempts,
                }
                for p in parking.listing(args.limit)
            ]
        finally:
            service.close()
    if args.json:
        print(json.dumps({**summary, "messages": messages}))
        return 0
    print(f"parked: {summary['count']}, oldest: {summary['oldest'] or '-'}")
    for row in summary["by_code"]:
        print(f"  {row['topic']} {row['code']}: {row['count']}")
    for m in messages:
        print(
            f"{m['parked_at']}\t{m['topic']}\t{m['key'] or '-'}\t{m['attempts']} tries"
            f"\t{m['reason']}"
        )
    return 0
