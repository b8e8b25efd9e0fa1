"""Prometheus metrics of one API instance, in its own registry (no global state).

Lag is measured on scrape against our own recorded positions (DESIGN.md: the embedded
broker's offsets are wrong), so a scrape costs a few small queries.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.driven.kafka.deadletters.replay import DeadLetterTally
from adapters.driven.readmodels.positions import projection_lag
from adapters.driven.relay import lag as relay_lag
from projections import default_projections

log = logging.getLogger(__name__)


class LagCollector(Collector):
    def __init__(self, database_url: str, relay_name: str) -> None:
        self.database_url = database_url
        self.relay_name = relay_name

    def collect(self) -> Iterator[GaugeMetricFamily]:
        relay = GaugeMetricFamily("oms_relay_lag_events", "Events stored, not yet relayed")
        projections = GaugeMetricFamily(
            "oms_projection_lag_events", "Events stored, not yet projected", labels=["projection"]
        )
        failed = GaugeMetricFamily(
            "oms_projection_failed_events",
            "Stored events a projection skipped because it could not apply them",
            labels=["projection"],
        )
        pending = GaugeMetricFamily(
            "oms_refunds_pending", "Refunds requested and not yet settled or failed"
        )
        oldest = GaugeMetricFamily(
            "oms_refunds_pending_oldest_seconds",
            "Age of the oldest refund the payment provider has not answered",
        )
        parked = GaugeMetricFamily(
            "oms_parked_messages", "Inbound messages parked until their order or RMA comes"
        )
        parked_oldest = GaugeMetricFamily(
            "oms_parked_oldest_seconds", "Age of the oldest parked inbound message"
        )
        try:
            relay.add_metric([], relay_lag(self.database_url, self.relay_name)["lag"])
        except psycopg.Error as error:  # the relay has not created its table yet
            log.debug("relay lag unavailable: %r", error)
        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                for projection in default_projections():
                    try:
                        behind = projection_lag(conn, projection)["events_behind"]
                    except psycopg.Error:
                        continue  # that projection has never run here
                    projections.add_metric([projection.name], behind)
                # Alert on these: a skipped event needs a fix and a rebuild; a refund
                # unanswered for long means the provider is not answering.
                for name, count in _rows(
                    conn,
                    "SELECT projection, count(*) FROM rm_failed_events GROUP BY projection",
                ):
                    failed.add_metric([name], count)
                for count, seconds in _rows(
                    conn,
                    "SELECT count(*), coalesce(extract(epoch FROM now() - min(requested_at)), 0)"
                    " FROM oms_refunds WHERE status = 'requested'",
                ):
                    pending.add_metric([], count)
                    oldest.add_metric([], float(seconds))
                # Parked messages go to the DLQ after OMS_PARK_FOR_S: an age near it means
                # an order or RMA the other systems never sent.
                for count, seconds in _rows(
                    conn,
                    "SELECT count(*), coalesce(extract(epoch FROM now() - min(parked_at)), 0)"
                    " FROM oms_parked_messages",
                ):
                    parked.add_metric([], count)
                    parked_oldest.add_metric([], float(seconds))
        except psycopg.Error as error:
            log.debug("projection lag unavailable: %r", error)
        yield relay
        yield projections
        yield failed
        yield pending
        yield oldest
        yield parked
        yield parked_oldest


def _rows(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    try:
        return conn.execute(query.encode()).fetchall()
    except psycopg.errors.UndefinedTable:  # nothing has created it here yet
        return []


class DeadLetterCollector(Collector):
    def __init__(self, tally: DeadLetterTally) -> None:
        self.tally = tally

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "oms_dead_letters",
            "Messages refused to a dead-letter topic, by the topic they came from and why",
            labels=["topic", "code"],
        )
        for (topic, code), count in sorted(self.tally.counts().items()):
            family.add_metric([topic, code], count)
        yield family


class Metrics:
    """``registry`` is what ``/metrics`` exposes. Under several worker processes
    (``PROMETHEUS_MULTIPROC_DIR`` set by the server before it starts them) a scrape reaches
    one worker at random, so requests and command latency are read from every worker's
    files, summed; otherwise from this process's own counters."""

    def __init__(
        self, database_url: str, relay_name: str, dead_letters: DeadLetterTally | None = None
    ) -> None:
        own = CollectorRegistry()
        self.requests = Counter(
            "oms_api_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=own,
        )
        self.commands = Histogram(
            "oms_api_command_seconds",
            "Latency of commands",
            ["command"],
            registry=own,
        )
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if shared:
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, shared)  # type: ignore[no-untyped-call]
        else:
            self.registry = own
        self.registry.register(LagCollector(database_url, relay_name))
        self.dead_letters = dead_letters
        if dead_letters is not None:
            self.registry.register(DeadLetterCollector(dead_letters))

    @contextmanager
    def timed(self, command: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.commands.labels(command).observe(time.perf_counter() - started)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Counts every response by method, route template and status.

        Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which runs each request
        in a task group with memory streams: measurable on every request of a burst.
        """

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status = 500

            async def sent(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sent)
            finally:
                route: Any = scope.get("route")
                # The route template, not the raw path: bounded label values.
                name = getattr(route, "path", "unmatched")
                self.requests.labels(scope["method"], name, str(status)).inc()

        return counted
