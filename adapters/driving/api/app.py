"""The app factory: wires service, read pool, keys and metrics into one FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import psycopg
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from psycopg_pool import ConnectionPool

from adapters.driven.kafka.deadletters.replay import DeadLetterTally
from adapters.driving import console
from adapters.driving.api import (
    problems,
    routes_analytics,
    routes_blind,
    routes_legs,
    routes_ops,
    routes_orders,
    routes_policy,
    routes_queues,
    routes_read,
    routes_reconciliation,
    routes_returns,
    routes_serials,
    routes_store_credit,
    routes_stores,
)
from adapters.driving.api.auth import Allow, KeyRing, Role
from adapters.driving.api.context import Api, keep_body
from adapters.driving.api.metrics import Metrics
from adapters.driving.api.settings import ApiSettings
from domain.application import ReturnsService

ROUTERS = (
    routes_orders.router,
    routes_returns.router,
    routes_blind.router,
    routes_stores.router,
    routes_read.router,
    routes_ops.router,
    routes_serials.router,
    routes_legs.router,
    routes_queues.router,
    routes_store_credit.router,
    routes_policy.router,
    routes_analytics.router,
    routes_reconciliation.router,
)

DESCRIPTION = """Returns OMS: RMAs for customer service, the customer portal and store
tablets, and the read side for analytics.

Authenticate with `Authorization: Bearer <key>` (or `X-API-Key`). Roles: customer_service,
portal, store (bound to one store), warehouse, analytics (read-only), ops (`/metrics`), admin.
The portal proves ownership of an order with its e-mail in `X-Customer-Email`; another
customer's RMA is not found. Every POST takes an `Idempotency-Key` (a key reused for another
request is refused); RMA commands check `If-Match` against the RMA's `ETag`. Errors are
`application/problem+json` with a machine-readable `code`."""


def create_api(
    service: ReturnsService,
    read_store_url: str,
    settings: ApiSettings | None = None,
    keys: KeyRing | None = None,
    kafka_bootstrap: str | None = None,
    *,
    close_service: bool = False,
) -> FastAPI:
    """``keys`` default to the file named by ``OMS_API_KEYS_FILE``; with ``kafka_bootstrap``
    ``/metrics`` also counts the dead letters on the DLQ topics; ``close_service``: the
    app owns the service and closes it on shutdown."""
    settings = settings or ApiSettings()
    keys = keys or KeyRing.from_env()
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        read_store_url,
        min_size=1,
        max_size=settings.read_pool_size,
        kwargs={"autocommit": True},
        open=False,
        timeout=5,
    )

    dead_letters = DeadLetterTally(kafka_bootstrap) if kafka_bootstrap else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.threads is not None:
            # Handlers are sync (psycopg, the event store): they run on this limiter's threads.
            anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        if dead_letters is not None:
            dead_letters.start()
        yield
        if dead_letters is not None:
            dead_letters.stop()
        pool.close()
        if close_service:
            service.close()

    app = FastAPI(
        title="Returns OMS API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(keep_body)],
    )
    metrics = Metrics(read_store_url, settings.relay_name, dead_letters)
    pool.open(wait=False)  # connects in the background: /ready tells when it can serve
    app.state.api = Api(service, read_store_url, pool, settings, keys, metrics)
    problems.install(app)
    problems.document_problems(app)
    app.add_middleware(metrics.middleware)
    for router in ROUTERS:
        app.include_router(router)
    console.install(app)
    return app


def secured_routes() -> list[tuple[str, str, frozenset[Role]]]:
    """(method, path, roles admitted) of every route behind a key: the access table."""
    table: list[tuple[str, str, frozenset[Role]]] = []
    for router in ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            allows = [d.call for d in route.dependant.dependencies if isinstance(d.call, Allow)]
            if allows:
                table.extend(
                    (method, route.path, allows[0].roles) for method in route.methods or ()
                )
    return sorted(table, key=lambda row: (row[1], row[0]))
