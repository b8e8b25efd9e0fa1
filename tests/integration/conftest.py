from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.eventstore import create_service
from domain.application import ReturnsService


@pytest.fixture(scope="session")
def service(database_url: str) -> Iterator[ReturnsService]:
    app = create_service(database_url, pool_size=12)
    try:
        yield app
    finally:
        app.close()
