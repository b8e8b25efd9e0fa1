"""``rma blind``: blind returns nobody could place, closed as unidentified."""

from __future__ import annotations

import argparse

from adapters.settings import Settings


def add_blind_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    blind = sub.add_parser("blind", help="blind returns: close those nobody could place")
    actions = blind.add_subparsers(dest="blind_action", required=True)
    close = actions.add_parser(
        "close-unidentified",
        help="close the blind returns waiting longer than the policy's blind_unidentified_days",
    )
    close.add_argument("--dry-run", action="store_true", help="list them, record nothing")
    close.add_argument("--limit", type=int, default=500, help="open blind returns looked at")


def run_blind(settings: Settings, args: argparse.Namespace) -> int:
    import getpass
    import uuid

    from adapters.driven.eventstore import create_service
    from adapters.driving.stack import postgres
    from domain.application import Ctx
    from domain.events import Cause

    with postgres(settings) as url:
        service = create_service(url, pool_size=2)
        try:
            cause = Cause(
                actor=f"cli/{getpass.getuser()}",
                source="rma blind close-unidentified",
                correlation_id=str(uuid.uuid4()),
            )
            closed = service.close_unidentified_blind_returns(
                Ctx(cause), limit=args.limit, dry_run=args.dry_run
            )
            verb = "would close" if args.dry_run else "closed"
            for return_id in closed:
                rma = service.get_return(return_id).state
                print(f"{return_id}\t{rma.blind_receipt_id}\t{verb} as unidentified")
            print(f"{len(closed)} blind returns {verb}")
            return 0
        finally:
            service.close()
