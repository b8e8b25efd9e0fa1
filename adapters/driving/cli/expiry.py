"""``rma expire``: the deadline sweeps once by hand, or (``--dry-run``) what they would do."""

from __future__ import annotations

import argparse
import getpass
import logging
from datetime import UTC, datetime

from adapters.settings import Settings


def add_expire_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    expire = sub.add_parser(
        "expire",
        help="expire RMAs never shipped and lapse keep-the-item offers that ran out, once",
    )
    expire.add_argument(
        "--dry-run", action="store_true", help="list what would expire or lapse; write nothing"
    )
    expire.add_argument("--batch", type=int, default=500, help="RMAs per transaction (default 500)")
    expire.add_argument(
        "--limit", type=int, default=10_000, help="most RMAs a dry run lists per kind"
    )


def run_expire(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.driven.eventstore import create_service
    from adapters.driven.sweeps import run_round
    from adapters.driving.stack import postgres

    with postgres(settings) as url:
        service = create_service(url, pool_size=3)
        try:
            if args.dry_run:
                now = datetime.now(UTC)
                print("action\trma_number\tsince\tdue_at")
                for due in service.due_to_expire(now, args.limit):
                    print(
                        f"expire\t{due.rma_number}\t{due.since.isoformat()}"
                        f"\t{due.due_at.isoformat()}"
                    )
                for due in service.due_to_lapse(now, args.limit):
                    print(
                        f"lapse\t{due.rma_number}\t{due.since.isoformat()}"
                        f"\t{due.due_at.isoformat()}"
                    )
                return 0
            # The progress lines are the sweeps' INFO log; show them whatever the level.
            logging.getLogger("adapters.driven.sweeps").setLevel(logging.INFO)
            report = run_round(service, batch=args.batch, actor=f"cli/{getpass.getuser()}")
            for name, ids in report.changed.items():
                if ids is None:
                    print(f"{name}: skipped, a worker is running it now (try again)")
                else:
                    print(f"{name}: {len(ids)} RMAs changed")
            return 0
        finally:
            service.close()
