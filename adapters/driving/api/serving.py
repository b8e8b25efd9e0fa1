"""Serving the API: ``serve`` for ``rma api`` and ``rma dev`` (worker processes), and
``served``: a real uvicorn server in a background thread, on a free local port.

``served`` is for the demo (its people act over real HTTP) and for tests that need real sockets
(concurrent clients, schemathesis). The socket is bound here and handed to uvicorn, so no
other process can take the port between choosing it and listening on it.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from adapters.settings import Settings


@contextmanager
def served(app: FastAPI, startup_timeout: float = 30) -> Iterator[str]:
    """Yield the base URL once ``/ready`` answers 200; stop the server on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="api"
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the API server stopped while starting (see its log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API did not start within {startup_timeout:.0f} s")
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=5) as probe:
            while probe.get("/ready").status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the API was not ready within {startup_timeout:.0f} s")
                time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(15)
        sock.close()


# ---------------------------------------------------------------- `rma api`
def app_from_env() -> FastAPI:
    """The app of one server process, from ``OMS_*`` settings (a uvicorn factory: with
    several workers each process builds its own service and pools)."""
    from adapters.driven.eventstore import create_service
    from adapters.driving.api.app import create_api
    from adapters.driving.api.auth import KeyRing
    from adapters.driving.api.settings import ApiSettings
    from adapters.settings import Settings

    settings = Settings.from_env()
    if settings.database_url is None or settings.api_keys_file is None:
        raise ValueError("the API process needs OMS_DATABASE_URL and OMS_API_KEYS_FILE")
    threads = settings.api_threads
    # One connection per handler thread in each pool: a thread never waits for another's.
    service = create_service(
        settings.database_url, pool_size=threads, policy_file=settings.policy_file
    )
    return create_api(
        service,
        settings.database_url,
        ApiSettings(
            threads=threads,
            read_pool_size=threads,
            metrics_public=settings.metrics_public,
            warehouse_addresses=settings.warehouse_addresses,
            console_secure_cookie=settings.console_secure_cookie,
            console_idle_hours=settings.console_idle_hours,
        ),
        keys=KeyRing.from_file(settings.api_keys_file),
        kafka_bootstrap=settings.kafka_bootstrap,
        close_service=True,
    )


def serve(settings: Settings, database_url: str, keys_file: Path) -> None:
    """Serve the API on ``api_host:api_port`` with ``api_processes`` worker processes until
    stopped. The workers are new interpreters: what they need reaches them through the
    environment (the database may be an embedded one started by this process)."""
    os.environ["OMS_DATABASE_URL"] = database_url
    os.environ["OMS_API_KEYS_FILE"] = str(keys_file)
    if settings.kafka_bootstrap:
        os.environ["OMS_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    workers = settings.api_processes
    with tempfile.TemporaryDirectory(prefix="oms-api-metrics-") as shared:
        if workers > 1:
            # Read by prometheus_client when the workers import it: their counters go to
            # files here, and a scrape of any worker sums them all.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
        uvicorn.run(
            "adapters.driving.api.serving:app_from_env",
            factory=True,
            host=settings.api_host,
            port=settings.api_port,
            workers=workers,
            log_level=settings.log_level.lower(),
        )
