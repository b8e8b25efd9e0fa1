"""The ``rma`` command: the composition root that wires settings, servers and services."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.settings import Settings

if TYPE_CHECKING:
    import faust

    from adapters.deadletters import DeadLetterFilter


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
    sub.add_parser("provision", help="create every topic (idempotent)")
    sub.add_parser("lag", help="show how far the relay is behind the event store")
    return parser


def add_dlq_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from datetime import datetime

    from adapters.deadletters import parse_moment, parse_positions

    def moment(text: str) -> datetime:
        try:
            return parse_moment(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
        return int(text)

    def positions(text: str) -> dict[int, int]:
        try:
            return parse_positions(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    dead = sub.add_parser("dlq", help="list, count or replay the dead letters of a topic")
    actions = dead.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="matching dead letters, a page at a time")
    replay = actions.add_parser(
        "replay", help="send matching dead letters back to their topic (their ids kept)"
    )
    for action in (listing, replay):
        action.add_argument("topic", help="the topic they were refused on, e.g. oms.orders.v1")
        found = action.add_argument_group("filters (all given must hold)")
        found.add_argument(
            "--code", action="append", default=[], help="x-dlq-error-code (repeatable: any of)"
        )
        found.add_argument(
            "--since",
            type=moment,
            help="dead-lettered at or after: RFC 3339, a day, or back from now (30m, 1h, 2d)",
        )
        found.add_argument("--until", type=moment, help="dead-lettered before (same forms)")
        found.add_argument("--key", action="append", default=[], help="message key (repeatable)")
        found.add_argument(
            "--id", action="append", default=[], help="CloudEvents id of the original"
        )
        found.add_argument(
            "--type", action="append", default=[], help="CloudEvents type of the original"
        )
        found.add_argument(
            "--after", type=positions, help="DLQ offsets above P:O[,P:O...] (a page cursor)"
        )
        found.add_argument(
            "--before", type=positions, help="DLQ offsets below P:O[,P:O...] (a page cursor)"
        )
        action.add_argument("--json", action="store_true", help="JSON for machines")
    listing.add_argument("--partition", type=int, help="only this DLQ partition")
    listing.add_argument("--limit", type=positive, default=50, help="page size (default 50)")
    listing.add_argument(
        "--order",
        choices=["newest", "oldest"],
        default="newest",
        help="newest first (default) or oldest first, merged across partitions by time",
    )
    listing.add_argument(
        "--count", action="store_true", help="print how many match, in all and per code"
    )
    replay.add_argument(
        "--partition",
        type=int,
        help="only this DLQ partition; with --offset, the one dead letter's (default 0)",
    )
    replay.add_argument("--offset", type=int, help="replay the one dead letter at this offset")
    replay.add_argument("--limit", type=positive, help="replay at most the N oldest matching")
    replay.add_argument("--all", action="store_true", help="replay every one (no filter)")
    replay.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed and skipped"
    )


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
    if args.command == "provision":
        return run_provision(settings)
    if args.command == "lag":
        return run_lag(settings)
    parser.error(f"unknown command {args.command}")
    return 2


def run_demo(settings: Settings, *, orders: int, seed: int, quiet: bool) -> int:
    """The whole system on the embedded default (or the configured servers), then a day."""
    import os

    from adapters.demo import play, start_relay
    from adapters.eventstore import create_service
    from adapters.stack import kafka, postgres
    from streams.worker import WorkerProcess

    root = Path(__file__).resolve().parent.parent
    with postgres(settings) as url, kafka(settings) as bootstrap:
        print(f"PostgreSQL: {url}\nKafka:      {bootstrap}")
        service = create_service(url)
        relay, stop, relay_thread = start_relay(url, bootstrap, settings.topic_partitions)
        env = {
            **os.environ,
            "OMS_DATABASE_URL": url,
            "OMS_KAFKA_BOOTSTRAP": bootstrap,
            "OMS_DATA_DIR": str(settings.data_dir),
            "OMS_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "OMS_LOG_LEVEL": "WARNING",
        }
        workers = [
            WorkerProcess(
                f"streams.{name}:app_from_env",
                workdir=settings.data_dir / name,
                env=env,
                cwd=root,
                loglevel="WARNING",
            ).start()
            for name in ("integrations", "projectors")
        ]
        try:
            for worker in workers:
                worker.wait_ready(timeout=120)
            print("relay, integrations worker and projections worker are running")
            return play(
                service,
                url,
                bootstrap,
                orders=orders,
                seed=seed,
                quiet=quiet,
                out_dir=settings.data_dir,
            )
        finally:
            for worker in workers:
                worker.terminate()
            stop.set()
            relay_thread.join(20)
            relay.close()
            service.close()


def run_relay(settings: Settings, *, batch_size: int, name: str, client: str) -> int:
    import signal
    import threading

    from adapters.eventstore import create_service
    from adapters.relay import Relay, RelayStats
    from adapters.stack import kafka, postgres
    from adapters.topics import topic_specs

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with postgres(settings) as url, kafka(settings) as bootstrap:
        create_service(url).close()  # creates the event store's tables on a fresh database
        relay = Relay(
            url,
            bootstrap,
            topic_specs=topic_specs(settings.topic_partitions),
            batch_size=batch_size,
            name=name,
            client="kafka-python" if client == "kafka-python" else "confluent",
        )

        def report(stats: RelayStats) -> None:
            logging.getLogger("relay").info(
                "relayed %d events in %d batches, at position %d",
                stats.published,
                stats.batches,
                stats.position,
            )

        try:
            relay.run(stop, on_batch=report)
        finally:
            relay.close()
    return 0


def run_integrations(settings: Settings) -> int:
    from adapters.embedded import provision_topics
    from adapters.eventstore import create_service
    from adapters.stack import kafka, postgres
    from adapters.topics import topic_specs
    from streams.integrations import create_integrations_app, kafka_publisher

    with postgres(settings) as url, kafka(settings) as bootstrap:
        # Faust must find its topics with their partition counts before it joins.
        provision_topics(bootstrap, topic_specs(settings.topic_partitions))
        wired = settings.model_copy(update={"database_url": url, "kafka_bootstrap": bootstrap})
        service = create_service(url, pool_size=4)
        provider = kafka_publisher(bootstrap, delay_s=settings.sandbox_settlement_delay_s)
        app = create_integrations_app(wired, service, provider)
        return _run_worker(app, settings, "integrations")


def _run_worker(app: faust.App, settings: Settings, name: str) -> int:
    """Run a worker; exit status 3 when it gave up, its reason in ``<data dir>/<name>.health``."""
    from streams.worker import FAILED_EXIT_STATUS, WorkerFailed, run_worker

    health = settings.data_dir / f"{name}.health"
    try:
        run_worker(app, loglevel=settings.log_level, health_file=health)
    except WorkerFailed as failed:
        logging.getLogger(name).critical("the %s worker gave up: %s (see %s)", name, failed, health)
        return FAILED_EXIT_STATUS
    return 0


def run_provision(settings: Settings) -> int:
    from adapters.embedded import provision_topics
    from adapters.stack import kafka
    from adapters.topics import topic_specs

    with kafka(settings) as bootstrap:
        specs = topic_specs(settings.topic_partitions)
        provision_topics(bootstrap, specs)
        print(f"{len(specs)} topics provisioned on {bootstrap}")
    return 0


def run_lag(settings: Settings) -> int:
    from adapters.readmodels import ReadModelStore, projection_lag
    from adapters.relay import lag
    from adapters.stack import postgres
    from projections import default_projections

    with postgres(settings) as url:
        print("relay:", lag(url))
        projections = default_projections()
        store = ReadModelStore(url, projections)
        try:
            for projection in projections:
                print("projection:", projection_lag(store.connection, projection))
        finally:
            store.close()
    return 0


def run_projections(settings: Settings) -> int:
    from adapters.embedded import provision_topics
    from adapters.publishers import ConfluentPublisher
    from adapters.readmodels import ReadModelStore
    from adapters.stack import kafka, postgres
    from adapters.topics import topic_specs
    from projections import default_projections
    from streams.projectors import Projector, create_projections_app

    with postgres(settings) as url, kafka(settings) as bootstrap:
        provision_topics(bootstrap, topic_specs(settings.topic_partitions))
        wired = settings.model_copy(update={"database_url": url, "kafka_bootstrap": bootstrap})
        projections = default_projections()
        store = ReadModelStore(url, projections)
        projector = Projector(store, projections, lambda: ConfluentPublisher(bootstrap))
        app = create_projections_app(wired, projector)
        return _run_worker(app, settings, "projections")


def run_rebuild(settings: Settings, names: list[str]) -> int:
    from adapters.readmodels import RebuildProgress, rebuild_many
    from adapters.stack import postgres
    from projections import default_projections

    chosen = [p for p in default_projections() if not names or p.name in names]
    unknown = set(names) - {p.name for p in chosen}
    if unknown:
        print(f"unknown projections: {sorted(unknown)}", file=sys.stderr)
        return 2

    def show(progress: RebuildProgress) -> None:
        total = max(progress.head, 1)
        done = min(progress.position, total)
        bar = "#" * (30 * done // total)
        sys.stderr.write(
            f"\r{progress.projection:<12} {progress.phase:<9} [{bar:<30}] "
            f"{progress.events} events, position {progress.position}/{progress.head}"
            # Stored events it could not apply: logged, and listed in rm_failed_events.
            + (f", {progress.skipped} skipped" if progress.skipped else "")
        )
        if progress.phase == "switched":
            sys.stderr.write("\n")

    with postgres(settings) as url:
        # One pass over the event store for all of them (reading the log is shared).
        rebuild_many(chosen, url, progress=show)
    return 0


def run_api(settings: Settings) -> int:
    from adapters.api.auth import KeyRing
    from adapters.api.serving import serve
    from adapters.eventstore import create_service
    from adapters.stack import postgres

    if settings.api_keys_file is None:
        print("OMS_API_KEYS_FILE is not set: the API serves no one without keys", file=sys.stderr)
        return 2
    KeyRing.from_file(settings.api_keys_file)  # a bad file fails here, not in every worker
    with postgres(settings) as url:
        # Creates the tables once, before the workers race to.
        create_service(url, pool_size=2).close()
        serve(settings, url, settings.api_keys_file)
    return 0


def run_dev(settings: Settings) -> int:
    """Everything in one command; Ctrl-C stops it all (API, workers, relay, servers)."""
    import os

    from adapters.api.serving import serve
    from adapters.demo import start_relay
    from adapters.dev import write_dev_keys, write_endpoints
    from adapters.eventstore import create_service
    from adapters.stack import kafka, postgres
    from streams.worker import WorkerProcess

    root = Path(__file__).resolve().parent.parent
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keys_file = settings.api_keys_file
    plain: dict[str, str] = {}
    if keys_file is None:
        keys_file = settings.data_dir / "dev-api-keys.json"
        plain = write_dev_keys(keys_file)
    with postgres(settings) as url, kafka(settings) as bootstrap:
        service = create_service(url, pool_size=8)
        relay, stop, relay_thread = start_relay(url, bootstrap, settings.topic_partitions)
        env = {
            **os.environ,
            "OMS_DATABASE_URL": url,
            "OMS_KAFKA_BOOTSTRAP": bootstrap,
            "OMS_DATA_DIR": str(settings.data_dir),
            "OMS_TOPIC_PARTITIONS": str(settings.topic_partitions),
        }
        workers = {
            name: WorkerProcess(
                f"streams.{name}:app_from_env", workdir=settings.data_dir / name, env=env, cwd=root
            ).start()
            for name in ("integrations", "projectors")
        }
        try:
            for worker in workers.values():
                worker.wait_ready(timeout=120)
            api_url = f"http://{settings.api_host}:{settings.api_port}"
            endpoints = {
                "postgres": url,
                "kafka": bootstrap,
                "api": api_url,
                "openapi": f"{api_url}/openapi.json",
                "api_keys_file": str(keys_file),
                "worker_logs": {n: str(w.log_path) for n, w in workers.items()},
            }
            write_endpoints(settings.data_dir / "endpoints.json", endpoints)
            for name, value in endpoints.items():
                print(f"{name:>14}: {value}")
            for principal, key in plain.items():
                print(f"  dev key {principal:<22} {key}")
            print("Ctrl-C stops everything.")
            serve(settings.model_copy(update={"kafka_bootstrap": bootstrap}), url, keys_file)
        finally:
            for worker in workers.values():
                worker.terminate()
            stop.set()
            relay_thread.join(20)
            relay.close()
            service.close()
    return 0


def run_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.deadletters import DeadLetterFilter
    from adapters.stack import kafka

    selection = DeadLetterFilter(
        codes=frozenset(args.code),
        since=args.since,
        until=args.until,
        keys=frozenset(key.encode() for key in args.key),
        ids=frozenset(args.id),
        types=frozenset(args.type),
        partitions=frozenset()
        if args.partition is None or getattr(args, "offset", None) is not None
        else frozenset({args.partition}),
        after=args.after or {},
        before=args.before or {},
    )
    with kafka(settings) as bootstrap:
        if args.action == "list":
            return _dlq_list(bootstrap, args, selection)
        return _dlq_replay(bootstrap, args, selection)


def _dlq_list(bootstrap: str, args: argparse.Namespace, selection: DeadLetterFilter) -> int:
    import json

    from adapters.deadletters import count, describe, list_page

    if args.count:
        by_code = count(bootstrap, args.topic, selection)
        total = sum(by_code.values())
        if args.json:
            print(json.dumps({"topic": args.topic, "total": total, "by_code": by_code}))
        else:
            print(f"{total} dead letters of {args.topic} match")
            for code, n in sorted(by_code.items(), key=lambda item: (-item[1], item[0])):
                print(f"  {n:>8}  {code}")
        return 0
    page = list_page(
        bootstrap, args.topic, selection, limit=args.limit, newest_first=args.order == "newest"
    )
    if args.json:
        next_page = None
        if page.cursor is not None:
            from adapters.deadletters import format_positions

            next_page = {"before" if page.newest_first else "after": format_positions(page.cursor)}
        print(
            json.dumps(
                {
                    "topic": args.topic,
                    "order": args.order,
                    "dead_letters": [describe(letter) for letter in page.letters],
                    "next": next_page,
                }
            )
        )
        return 0
    rows = [describe(letter, with_value=False) for letter in page.letters]
    print(f"{'TIME':<24} {'AT':<9} {'CODE':<18} {'KEY':<20} {'TYPE':<18} {'ID':<36} REASON")
    for row in rows:
        flag = " [truncated]" if row["truncated"] else ""
        print(
            f"{row['time'] or '-':<24} {str(row['partition']) + ':' + str(row['offset']):<9} "
            f"{row['code']:<18.18} {row['key'] or '-':<20.20} {row['type'] or '-':<18.18} "
            f"{row['id'] or '-':<36.36} {' '.join(row['reason'].split())[:100]}{flag}"
        )
    order = "newest" if page.newest_first else "oldest"
    print(f"{len(rows)} shown, {order} first", end="")
    print(f"; next page: the same command with {page.cursor_option}" if page.cursor_option else "")
    return 0


def _dlq_replay(bootstrap: str, args: argparse.Namespace, selection: DeadLetterFilter) -> int:
    import json

    from adapters.deadletters import (
        Planned,
        ReplayResult,
        format_positions,
        plan_replay,
        replay,
        replay_dead_letter,
    )

    if args.offset is not None:
        partition = args.partition or 0
        try:
            original = replay_dead_letter(bootstrap, args.topic, partition, args.offset)
        except (LookupError, ValueError) as error:
            print(error, file=sys.stderr)
            return 1
        print(f"replayed {args.topic}.dlq[{partition}]@{args.offset} to {original}")
        return 0
    if selection.is_empty() and not args.all:
        print(
            "replay needs a filter (--code, --since, --key, ...), --all, "
            "or --partition P --offset N",
            file=sys.stderr,
        )
        return 2
    plan = plan_replay(bootstrap, args.topic, selection, limit=args.limit)

    def line(planned: Planned) -> str:
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(planned.timestamp_ms / 1000, UTC)
        when_text = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        key = planned.key.decode(errors="replace") if planned.key is not None else "-"
        return (
            f"{planned.partition}:{planned.offset} {when_text} {planned.code} key={key} "
            f"type={planned.event_type or '-'} id={planned.event_id or '-'}"
        )

    def as_json(planned: Planned) -> dict[str, Any]:
        return {
            "partition": planned.partition,
            "offset": planned.offset,
            "code": planned.code,
            "key": planned.key.decode(errors="replace") if planned.key is not None else None,
            "id": planned.event_id,
            "type": planned.event_type,
            "to": planned.original_topic,
            "skip": planned.skip,
        }

    todo, skipped = plan.replayable, plan.skipped
    if args.dry_run:
        if args.json:
            print(
                json.dumps(
                    {
                        "topic": args.topic,
                        "dry_run": True,
                        "plan": [as_json(p) for p in plan.selected],
                    }
                )
            )
            return 0
        for planned in plan.selected:
            if planned.skip is None:
                print(f"would replay {line(planned)} -> {planned.original_topic}")
            else:
                print(f"would skip   {line(planned)}: {planned.skip}")
        print(f"dry run: would replay {len(todo)}, skip {len(skipped)} of {args.topic}.dlq")
        return 0
    out = sys.stderr if args.json else sys.stdout
    for planned in skipped:
        print(f"skip {line(planned)}: {planned.skip}", file=out)
    print(
        f"replaying {len(todo)} dead letters of {args.topic}.dlq ({len(skipped)} skipped)", file=out
    )

    def show(result: ReplayResult, total: int) -> None:
        print(f"  sent {result.sent}/{total}", file=out, flush=True)

    result = replay(bootstrap, plan, progress=show)
    if args.json:
        print(
            json.dumps(
                {
                    "topic": args.topic,
                    "planned": len(todo),
                    "sent": result.sent,
                    "by_topic": dict(result.by_topic),
                    "skipped": [as_json(p) for p in skipped],
                    "failed": [{**as_json(p), "error": why} for p, why in result.failed],
                    "missing": [as_json(p) for p in result.missing],
                    "error": result.error,
                }
            )
        )
    sent_to = ", ".join(f"{n} to {topic}" for topic, n in sorted(result.by_topic.items()))
    print(
        f"replayed {result.sent} of {len(todo)} ({sent_to or 'none sent'}); skipped {len(skipped)}",
        file=out,
    )
    for planned, why in result.failed:
        print(f"FAILED {line(planned)}: {why}", file=out)
    if result.error:
        print(f"STOPPED: {result.error}", file=out)
    if result.missing:
        gone = format_positions({p.partition: p.offset for p in result.missing})
        print(f"MISSING (no longer on the DLQ): {len(result.missing)}, e.g. {gone}", file=out)
    if not result.ok:
        unsent = len(todo) - result.sent
        print(f"{unsent} not sent: fix the cause and run the same command again", file=out)
        return 1
    return 0


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

    from adapters.eventstore import create_service
    from adapters.refunds import RefundDispatches
    from adapters.stack import postgres

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


if __name__ == "__main__":
    sys.exit(main())
