"""The running system for end-to-end tests: relay, integrations worker, shared servers.

One per test session: the embedded PostgreSQL and Tansu from tests/conftest.py, topics
provisioned, the relay in a thread, the integrations worker (faust) in its own process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import pluggy
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.provisioning import provision_topics
from adapters.driven.kafka.topics import topic_specs
from adapters.driven.relay import Relay
from adapters.driving.api import ApiSettings, KeyRing, create_api
from adapters.driving.api.serving import served
from streams.worker import WorkerProcess
from tests.e2e.builders import System
from tests.e2e.console import CONSOLE_KEYS, chromium
from tests.integration.builders import fresh_database

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2


@pytest.fixture(scope="session")
def system(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    # A database of its own: the relay starts from an empty event store, not the history
    # the unit and integration tiers left in the shared one, so no test here waits behind
    # thousands of earlier events (and refunds for the sandbox) to be relayed and handled.
    database_url = fresh_database(database_url, "e2e_system")
    provision_topics(kafka_bootstrap, topic_specs(PARTITIONS))
    service = create_service(database_url, pool_size=6)
    relay = Relay(
        database_url, kafka_bootstrap, topic_specs=topic_specs(PARTITIONS), name="e2e-relay"
    )
    stop = threading.Event()
    relay_thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    relay_thread.start()
    workdir = tmp_path_factory.mktemp("integrations")
    env = {
        **os.environ,
        "OMS_DATABASE_URL": database_url,
        "OMS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "OMS_DATA_DIR": str(workdir),
        "OMS_TOPIC_PARTITIONS": str(PARTITIONS),
    }
    worker = WorkerProcess(
        "streams.integrations:app_from_env", workdir=workdir, env=env, cwd=ROOT
    ).start()
    projections = WorkerProcess(
        "streams.projectors:app_from_env",
        workdir=tmp_path_factory.mktemp("projections"),
        env=env,
        cwd=ROOT,
    ).start()
    try:
        worker.wait_ready(timeout=90)
        projections.wait_ready(timeout=90)
        yield System(database_url, kafka_bootstrap, service, worker, projections)
    finally:
        projections.terminate()
        worker.terminate()
        stop.set()
        relay_thread.join(20)
        relay.close()
        service.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    # A wait that times out in CI says only what it waited for: the workers' own logs say
    # why (a refused message, a rebalance, a crash), and they are gone with the clone.
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    system = getattr(item, "funcargs", {}).get("system")
    if isinstance(system, System):
        for name, worker in (("integrations", system.worker), ("projections", system.projections)):
            report.sections.append((f"{name} worker log (tail)", worker.log_tail(6000)))


@pytest.fixture(scope="session")
def console(system: System) -> Iterator[str]:
    """The API with the console, served by uvicorn on the session's stack; its base URL."""
    api = create_api(
        system.service,
        system.database_url,
        ApiSettings(),
        KeyRing.with_keys(CONSOLE_KEYS),
        system.bootstrap,
    )
    with served(api) as url:
        yield url.replace("127.0.0.1", "localhost")  # a secure context: Secure cookies work


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the session's console journeys (each signs in afresh)."""
    with chromium() as driver:
        yield driver
