"""Liveness and readiness, unauthenticated for orchestrators; metrics for Prometheus, behind
an ``ops`` key unless the deployment makes them public."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.driving.api.auth import MetricsReader
from adapters.driving.api.context import api_of
from adapters.driving.api.problems import Problem, problem_responses

router = APIRouter(tags=["operations"])


@router.get("/health")
def health() -> dict[str, Any]:
    """The process answers (liveness)."""
    return {"status": "ok"}


@router.get("/ready", responses=problem_responses(503))
def ready(request: Request) -> dict[str, Any]:
    """PostgreSQL answers (readiness): 503 otherwise."""
    api = api_of(request)
    try:
        with api.read() as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, TimeoutError) as error:
        raise Problem(
            503, "not_ready", f"PostgreSQL is unreachable: {type(error).__name__}"
        ) from error
    return {"status": "ready"}


@router.get(
    "/metrics",
    response_class=Response,
    responses=problem_responses(401, 403),
    dependencies=[Depends(MetricsReader())],
)
def metrics(request: Request) -> Response:
    """Prometheus text format: requests, command latency, relay and projection lag. Needs
    a key of the ``ops`` or ``admin`` role unless ``OMS_METRICS_PUBLIC`` is set."""
    body = generate_latest(api_of(request).metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
