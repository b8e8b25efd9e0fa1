"""The ``rma`` command: the composition root that wires settings, servers and services.

The only importer of ``streams/``; those imports stay inside the commands (``workers``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from adapters.driving.cli.blind import add_blind_parser, run_blind
from adapters.driving.cli.dlq import add_dlq_parser, run_dlq
from adapters.driving.cli.expiry import add_expire_parser, run_expire
from adapters.driving.cli.parked import add_parked_parser, run_parked
from adapters.driving.cli.policy import add_policy_parser, run_policy
from adapters.driving.cli.reconcile import add_reconcile_parser, run_reconcile
from adapters.driving.cli.refunds import add_refunds_parser, run_refunds
from adapters.driving.cli.workers import (
    run_api,
    run_demo,
    run_dev,
    run_integrations,
    run_lag,
    run_projections,
    run_provision,
    run_rebuild,
    run_relay,
)
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
    schemas = sub.add_parser("schemas", help="export the contract's JSON Schemas")
    schemas.add_argument("--out", default=None, help="directory (default docs/schemas)")
    relay = sub.add_parser("relay", help="publish the event store to Kafka, in order, forever")
    relay.add_argument("--batch-size", type=int, default=5000)
    relay.add_argument("--name", default="relay", help="position name (one per relay)")
    relay.add_argument(
        "--client",
        choices=["confluent", "kafka-python"],
        default="confluent",
        help="producer library (both idempotent, murmur2 partitioning)",
    )
    sub.add_parser(
        "integrations",
        help="run the integrations worker: inbound topics to commands, refunds to the provider",
    )
    sub.add_parser("projections", help="run the projections worker: relayed events to read models")
    rebuild = sub.add_parser("rebuild", help="replay the event store into fresh read models")
    rebuild.add_argument("names", nargs="*", help="projections to rebuild (default: all)")
    sub.add_parser("api", help="serve the HTTP API (keys from OMS_API_KEYS_FILE)")
    sub.add_parser(
        "dev", help="the whole system on the embedded default: servers, relay, workers, API"
    )
    add_dlq_parser(sub)
    add_refunds_parser(sub)
    add_expire_parser(sub)
    add_blind_parser(sub)
    add_parked_parser(sub)
    add_policy_parser(sub)
    add_reconcile_parser(sub)
    sub.add_parser("provision", help="create every topic (idempotent)")
    sub.add_parser("lag", help="show how far the relay is behind the event store")
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
    # The Kafka clients narrate every connection at INFO; our own logs are what operators read.
    for noisy in ("kafka", "aiokafka", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.command == "demo":
        return run_demo(settings, orders=args.orders, seed=args.seed, quiet=args.quiet)
    if args.command == "schemas":
        from adapters.schemas import DEFAULT_DIR, export

        written = export(Path(args.out) if args.out else DEFAULT_DIR)
        print(f"wrote {len(written)} schemas under {args.out or DEFAULT_DIR}")
        return 0
    if args.command == "relay":
        return run_relay(settings, batch_size=args.batch_size, name=args.name, client=args.client)
    if args.command == "integrations":
        return run_integrations(settings)
    if args.command == "projections":
        return run_projections(settings)
    if args.command == "rebuild":
        return run_rebuild(settings, args.names)
    if args.command == "api":
        return run_api(settings)
    if args.command == "dev":
        return run_dev(settings)
    if args.command == "dlq":
        return run_dlq(settings, args)
    if args.command == "refunds":
        return run_refunds(settings, args)
    if args.command == "expire":
        return run_expire(settings, args)
    if args.command == "blind":
        return run_blind(settings, args)
    if args.command == "parked":
        return run_parked(settings, args)
    if args.command == "policy":
        return run_policy(settings, args)
    if args.command == "reconcile":
        return run_reconcile(settings, args)
    if args.command == "provision":
        return run_provision(settings)
    if args.command == "lag":
        return run_lag(settings)
    parser.error(f"unknown command {args.command}")
    return 2


__all__ = ["build_parser", "main", "subcommands"]
