"""The long-running ``rma`` commands: the demo, the relay, the workers, the API, the dev stack.

Every import of a server, a worker or ``streams/`` happens inside the command that needs
it, so ``rma --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.settings import Settings

# The repository root: the workers run from it, as from a checkout, so ``streams.*`` resolves.
ROOT = Path(__file__).resolve().parents[3]

if TYPE_CHECKING:
    import faust

    from adapters.driven.relay import Relay


def run_demo(settings: Settings, *, orders: int, seed: int, quiet: bool) -> int:
    """The whole system on the embedded default (or the configured servers), then a day."""
    import os

    from adapters.driven.eventstore import create_service
    from adapters.driving.demo.report import play
    from adapters.driving.stack import kafka, postgres
    from streams.worker import WorkerProcess

    with postgres(settings) as url, kafka(settings) as bootstrap:
        print(f"PostgreSQL: {url}\nKafka:      {bootstrap}")
        service = create_service(url, policy_file=settings.policy_file)
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
                cwd=ROOT,
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

    from adapters.driven.eventstore import create_service
    from adapters.driven.kafka.topics import topic_specs
    from adapters.driven.relay import Relay, RelayStats
    from adapters.driving.stack import kafka, postgres

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
    from adapters.driven.eventstore import create_service
    from adapters.driven.kafka.provisioning import provision_topics
    from adapters.driven.kafka.topics import topic_specs
    from adapters.driving.stack import kafka, postgres
    from streams.integrations import create_integrations_app, kafka_publisher

    with postgres(settings) as url, kafka(settings) as bootstrap:
        # Faust must find its topics with their partition counts before it joins.
        provision_topics(bootstrap, topic_specs(settings.topic_partitions))
        wired = settings.model_copy(update={"database_url": url, "kafka_bootstrap": bootstrap})
        service = create_service(url, pool_size=4, policy_file=settings.policy_file)
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
    from adapters.driven.kafka.provisioning import provision_topics
    from adapters.driven.kafka.topics import topic_specs
    from adapters.driving.stack import kafka

    with kafka(settings) as bootstrap:
        specs = topic_specs(settings.topic_partitions)
        provision_topics(bootstrap, specs)
        print(f"{len(specs)} topics provisioned on {bootstrap}")
    return 0


def run_lag(settings: Settings) -> int:
    from adapters.driven.readmodels.positions import projection_lag
    from adapters.driven.readmodels.store import ReadModelStore
    from adapters.driven.relay import lag
    from adapters.driving.stack import postgres
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
    from adapters.driven.kafka.provisioning import provision_topics
    from adapters.driven.kafka.publishers import ConfluentPublisher
    from adapters.driven.kafka.topics import topic_specs
    from adapters.driven.readmodels.store import ReadModelStore
    from adapters.driving.stack import kafka, postgres
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
    from adapters.driven.readmodels.rebuild import RebuildProgress, rebuild_many
    from adapters.driving.stack import postgres
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
    from adapters.driven.eventstore import create_service
    from adapters.driving.api.auth import KeyRing
    from adapters.driving.api.serving import serve
    from adapters.driving.stack import postgres

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

    from adapters.driven.eventstore import create_service
    from adapters.driving.api.serving import serve
    from adapters.driving.dev import write_dev_keys, write_endpoints
    from adapters.driving.stack import kafka, postgres
    from streams.worker import WorkerProcess

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
                f"streams.{name}:app_from_env", workdir=settings.data_dir / name, env=env, cwd=ROOT
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


def start_relay(
    database_url: str, bootstrap: str, partitions: int
) -> tuple[Relay, threading.Event, threading.Thread]:
    """Provision every topic, then run a relay in a daemon thread (``rma demo``, ``rma dev``)."""
    from adapters.driven.kafka.provisioning import provision_topics
    from adapters.driven.kafka.topics import topic_specs
    from adapters.driven.relay import Relay

    provision_topics(bootstrap, topic_specs(partitions))
    relay = Relay(database_url, bootstrap, topic_specs=topic_specs(partitions), name="relay")
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True, name="relay")
    thread.start()
    return relay, stop, thread
