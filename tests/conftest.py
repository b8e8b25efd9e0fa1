"""One embedded stack per test session, started only when a test asks for it.

``OMS_DATABASE_URL`` points the suite at an external PostgreSQL instead (docker-compose,
CI with services); otherwise a fresh embedded PostgreSQL 18 lives under pytest's tmp dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.driven.embedded.postgres import EmbeddedPostgres
from adapters.driven.embedded.tansu import EmbeddedKafka
from adapters.driven.eventstore import create_service
from domain.application import ReturnsService


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("OMS_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("stack")) / "postgres").start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("OMS_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    broker = EmbeddedKafka(Path(tmp_path_factory.mktemp("stack")) / "tansu").start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def service(database_url: str) -> Iterator[ReturnsService]:
    """The service alone on the shared database (no relay, no workers)."""
    app = create_service(database_url, pool_size=12)
    try:
        yield app
    finally:
        app.close()
