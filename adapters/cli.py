"""The ``rma`` command: the composition root that wires settings, servers and services."""

from __future__ import annotations

import argparse
import logging
import sys

from adapters.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rma", description="Returns OMS operations")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="play a day of returns on the embedded (or configured) stack"
    )
    demo.add_argument("--orders", type=int, default=120, help="orders to place (default 120)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the scenario")
    demo.add_argument("--quiet", action="store_true", help="print only progress and the summary")
    return parser


def subcommands() -> set[str]:
    parser = build_parser()
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "demo":
        return run_demo(settings, orders=args.orders, seed=args.seed, quiet=args.quiet)
    parser.error(f"unknown command {args.command}")
    return 2


def run_demo(settings: Settings, *, orders: int, seed: int, quiet: bool) -> int:
    from adapters.demo import Demo, check_lookups_against_replay, print_summary
    from adapters.eventstore import create_service
    from adapters.stack import postgres

    with postgres(settings) as url:
        print(f"PostgreSQL: {url}")
        service = create_service(url)
        try:
            report = Demo(service, orders=orders, seed=seed, quiet=quiet).run()
            print_summary(report)
            mismatches = check_lookups_against_replay(service, url)
        finally:
            service.close()
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
