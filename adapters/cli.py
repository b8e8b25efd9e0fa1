"""The ``rma`` command: the composition root that wires settings, servers and services."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

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
    dead = sub.add_parser("dlq", help="list or replay dead letters of an inbound topic")
    dead.add_argument("action", choices=["list", "replay"])
    dead.add_argument("topic", help="the inbound topic, e.g. wms.receipts.v1")
    dead.add_argument("--partition", type=int, default=0)
    dead.add_argument("--offset", type=int, help="the dead letter to replay")
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
        return run_dlq(settings, args.action, args.topic, args.partition, args.offset)
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
    from streams.worker import run_worker

    with postgres(settings) as url, kafka(settings) as bootstrap:
        # Faust must find its topics with their partition counts before it joins.
        provision_topics(bootstrap, topic_specs(settings.topic_partitions))
        wired = settings.model_copy(update={"database_url": url, "kafka_bootstrap": bootstrap})
        service = create_service(url, pool_size=4)
        app = create_integrations_app(wired, service, kafka_publisher(bootstrap))
        run_worker(app, loglevel=settings.log_level)
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
    from streams.worker import run_worker

    with postgres(settings) as url, kafka(settings) as bootstrap:
        provision_topics(bootstrap, topic_specs(settings.topic_partitions))
        wired = settings.model_copy(update={"database_url": url, "kafka_bootstrap": bootstrap})
        projections = default_projections()
        store = ReadModelStore(url, projections)
        projector = Projector(store, projections, lambda: ConfluentPublisher(bootstrap))
        app = create_projections_app(wired, projector)
        run_worker(app, loglevel=settings.log_level)
    return 0


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
    import uvicorn

    from adapters.api.app import create_api
    from adapters.api.auth import KeyRing
    from adapters.eventstore import create_service
    from adapters.stack import postgres

    if settings.api_keys_file is None:
        print("OMS_API_KEYS_FILE is not set: the API serves no one without keys", file=sys.stderr)
        return 2
    keys = KeyRing.from_file(settings.api_keys_file)
    with postgres(settings) as url:
        service = create_service(url, pool_size=8)
        try:
            api = create_api(service, url, keys=keys, kafka_bootstrap=settings.kafka_bootstrap)
            uvicorn.run(
                api,
                host=settings.api_host,
                port=settings.api_port,
                log_level=settings.log_level.lower(),
            )
        finally:
            service.close()
    return 0


def run_dev(settings: Settings) -> int:
    """Everything in one command; Ctrl-C stops it all (API, workers, relay, servers)."""
    import os

    import uvicorn

    from adapters.api.app import create_api
    from adapters.api.auth import KeyRing
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
            api = create_api(
                service, url, keys=KeyRing.from_file(keys_file), kafka_bootstrap=bootstrap
            )
            uvicorn.run(api, host=settings.api_host, port=settings.api_port, log_level="warning")
        finally:
            for worker in workers.values():
                worker.terminate()
            stop.set()
            relay_thread.join(20)
            relay.close()
            service.close()
    return 0


def run_dlq(settings: Settings, action: str, topic: str, partition: int, offset: int | None) -> int:
    from adapters.deadletters import list_dead_letters, replay_dead_letter
    from adapters.stack import kafka

    with kafka(settings) as bootstrap:
        if action == "list":
            for letter in list_dead_letters(bootstrap, topic):
                print(
                    f"[{letter['partition']}]@{letter['offset']} {letter['code']}: "
                    f"{letter['reason']} | {letter['value'][:200]}"
                )
            return 0
        if offset is None:
            print("replay needs --offset (and --partition)", file=sys.stderr)
            return 2
        original = replay_dead_letter(bootstrap, topic, partition, offset)
        print(f"replayed {topic}.dlq[{partition}]@{offset} to {original}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
