"""A burst of concurrent HTTP requests against ``rma api``, as a portal sale day sends them.

Run as ``python -m bench.api_burst [--runs N] [--burst N] [--before REV]``. It starts an
embedded PostgreSQL (or uses ``OMS_DATABASE_URL``, a scratch database), seeds delivered
orders and RMAs through the service, then serves the API exactly as ``rma api`` does (the
real command, in its own process group) and sends ``--burst`` requests at once with httpx
(a realistic mix: portal reads of RMAs and orders, timelines, read-side lists, new RMA
requests under Idempotency-Keys). It reports the median and p99 latency of each burst.

Configurations run in turns (one burst of each, over and over), so a change of load on
this shared machine hits them alike: the current code with its default workers, the
current code with one worker, and with ``--before REV`` the code of that commit (exported
with ``git archive`` and served by its own ``rma api``). The table goes to stdout and to
``bench/results/api-burst.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx

from adapters.driven.eventstore import create_service
from adapters.driving.api.auth import hash_key
from bench.common import RESULTS_DIR, ROOT, median, progress, stack, tree_cpu_seconds
from domain.application import Ctx, ReturnsService
from domain.commands import DeliverOrder, FulfilOrder, PlaceOrder, RequestReturn
from domain.events import Cause, FulfilledLine, OrderLine, Payment
from domain.returns import RequestedLine
from domain.values import Channel, PaymentMethod, ReasonCode
from tests.unit.builders import eur

KEYS = {"bench-cs": ("agent", "customer_service"), "bench-portal": ("portal-web", "portal")}
CS = {"Authorization": "Bearer bench-cs"}


def ctx() -> Ctx:
    return Ctx(Cause(actor="bench", source="bench", correlation_id=str(uuid.uuid4())))


def delivered_order(service: ReturnsService, number: str) -> None:
    service.run(
        ctx(),
        PlaceOrder(
            order_number=number,
            customer_id=f"cust-{number}",
            customer_email=f"{number.lower()}@example.com",
            channel=Channel.WEB,
            lines=(
                OrderLine(
                    line_no=1,
                    sku="SHOE-RED-42",
                    name="Red shoe",
                    quantity=2,
                    unit_price=eur("50.00"),
                    serials=(),
                    supplier="Acme",
                    category="shoes",
                ),
            ),
            payments=(
                Payment(payment_id="pay-1", method=PaymentMethod.CARD, amount=eur("105.00")),
            ),
            shipping=eur("5.00"),
        ),
    )
    service.run(
        ctx(),
        FulfilOrder(
            order_number=number, location_id="WH-1", lines=(FulfilledLine(line_no=1, quantity=2),)
        ),
    )
    service.run(ctx(), DeliverOrder(order_number=number))


@dataclass
class Seed:
    with_rma: list[tuple[str, str]]  # (order number, RMA number)
    fresh: list[str]  # orders with nothing returned yet: for new RMA requests
    used: int = 0

    def next_fresh(self) -> str:
        order = self.fresh[self.used]
        self.used += 1
        return order


def seed(url: str, with_rma: int, fresh: int) -> Seed:
    service = create_service(url, pool_size=4)
    try:
        rmas = []
        for i in range(with_rma):
            number = f"BURST-{uuid.uuid4().hex[:8]}-{i}"
            delivered_order(service, number)
            outcome = service.run(
                ctx(),
                RequestReturn(
                    order_number=number,
                    lines=(RequestedLine(1, 1, ReasonCode.SIZE_TOO_SMALL, None, ""),),
                ),
            )
            rmas.append((number, outcome.rma_number or str(outcome.aggregate_id)))
        orders = []
        for i in range(fresh):
            number = f"FRESH-{uuid.uuid4().hex[:8]}-{i}"
            delivered_order(service, number)
            orders.append(number)
        return Seed(rmas, orders)
    finally:
        service.close()


def write_keys(path: Path) -> None:
    salt = secrets.token_hex(16)
    entries = [
        {"principal": principal, "role": role, "sha256": hash_key(salt, key)}
        for key, (principal, role) in KEYS.items()
    ]
    path.write_text(json.dumps({"salt": salt, "keys": entries}))


# ---------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def rma_api(code: Path, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``rma api`` from the code under ``code``, until its ``/ready`` answers: (URL, pid)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.driving.cli", "api"],
        cwd=code,
        env={**os.environ, **env, "OMS_API_PORT": str(port), "PYTHONPATH": str(code)},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=url, timeout=5) as probe:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"rma api exited with {process.returncode}")
                try:
                    if probe.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("rma api was not ready within 120 s")
                time.sleep(0.2)
        yield url, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


# ---------------------------------------------------------------------------- the burst
def portal(order: str) -> dict[str, str]:
    return {
        "Authorization": "Bearer bench-portal",
        "X-Customer-Email": f"{order.lower()}@example.com",
    }


def mix(seed: Seed, size: int, rng_offset: int) -> list[tuple[str, str, dict[str, str], Any]]:
    """(method, path, headers, json body) of ``size`` requests: 30% RMA status on the
    portal, 20% order on the portal, 10% timeline and 10% order for customer service, 20%
    read-side lists, 10% new RMA requests."""
    requests: list[tuple[str, str, dict[str, str], Any]] = []
    for i in range(size):
        order, rma = seed.with_rma[(i + rng_offset) % len(seed.with_rma)]
        slot = i % 10
        if slot in (0, 1, 2):
            requests.append(("GET", f"/v1/returns/{rma}", portal(order), None))
        elif slot in (3, 4):
            requests.append(("GET", f"/v1/orders/{order}", portal(order), None))
        elif slot == 5:
            requests.append(("GET", f"/v1/returns/{rma}/timeline", CS, None))
        elif slot == 6:
            requests.append(("GET", f"/v1/orders/{order}", CS, None))
        elif slot == 7:
            requests.append(("GET", "/v1/blind-returns?limit=20", CS, None))
        elif slot == 8:
            requests.append(("GET", "/v1/stock?limit=20", CS, None))
        else:
            fresh = seed.next_fresh()
            body = {
                "order_number": fresh,
                "lines": [{"line_no": 1, "quantity": 1, "reason": "size_too_large"}],
            }
            headers = portal(fresh) | {"Idempotency-Key": f"burst-{fresh}"}
            requests.append(("POST", "/v1/returns", headers, body))
    return requests


@dataclass
class Burst:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    wall: float = 0.0
    client_cpu: float = 0.0
    # CPU seconds of the API's processes and PostgreSQL's over the burst (and its warm-up).
    cpu: dict[str, float] = field(default_factory=dict)

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def burst(url: str, requests: list[tuple[str, str, dict[str, str], Any]]) -> Burst:
    """Every request from its own client on its own open connection, released together.

    One client per request, as 500 customers would be: a single httpx client with 500
    connections spends ~10 ms of CPU per request managing its pool (measured: the client
    used 9.6 s of CPU for a burst the server answered with 0.9 s), so it, not the API,
    would be measured.
    """
    result = Burst()
    tls = ssl.create_default_context()  # built once: httpx would build one per client (~30 ms)
    clients = [httpx.AsyncClient(base_url=url, timeout=120, verify=tls) for _ in requests]
    try:
        # Connected first, as a busy load balancer keeps them: the burst measures the API,
        # not TCP handshakes.
        await asyncio.gather(*(client.get("/health") for client in clients))
        gate = asyncio.Event()

        async def one(
            client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], body: Any
        ) -> None:
            await gate.wait()
            started = time.perf_counter()
            response = await client.request(method, path, headers=headers, json=body)
            result.latencies.append(time.perf_counter() - started)
            result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1

        tasks = [asyncio.create_task(one(c, *r)) for c, r in zip(clients, requests, strict=True)]
        await asyncio.sleep(0.2)
        cpu = time.process_time()
        t0 = time.perf_counter()
        gate.set()
        await asyncio.gather(*tasks)
        result.wall = time.perf_counter() - t0
        result.client_cpu = time.process_time() - cpu
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return result


def cpu_per_request(bursts: list[Burst]) -> str:
    """Median CPU per request of each side; API and PostgreSQL include the warm-up's
    ``/health`` (one per request, ~1 ms of the API's CPU each)."""
    n = len(bursts[0].latencies)
    api = median([b.cpu.get("api", 0.0) for b in bursts]) / n * 1000
    pg = median([b.cpu.get("postgres", 0.0) for b in bursts]) / n * 1000
    client = median([b.client_cpu for b in bursts]) / n * 1000
    return f"{api:.1f}, {pg:.1f}, {client:.1f}"


def export(rev: str) -> Path:
    """The tree of ``rev`` in a temporary directory (no worktree, no checkout)."""
    target = Path(tempfile.mkdtemp(prefix="oms-before-"))
    archive = subprocess.run(
        ["git", "archive", rev], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_burst")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--before", help="a commit to compare with (served by its rma api)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "api-burst.md"))
    args = parser.parse_args(argv)

    configs: dict[str, tuple[Path, dict[str, str]]] = {}
    if args.before:
        configs[f"before ({args.before}, its defaults)"] = (export(args.before), {})
    workers = os.cpu_count() or 1
    configs["after, 1 worker"] = (ROOT, {"OMS_API_WORKERS": "1"})
    configs[f"after, default workers ({workers})"] = (ROOT, {})
    load_before = os.getloadavg()[0]
    with stack(kafka=False) as running, tempfile.TemporaryDirectory() as scratch:
        keys = Path(scratch) / "keys.json"
        write_keys(keys)
        new_rmas = args.burst // 10 + 1
        progress(f"seeding {200} orders with RMAs, {new_rmas * args.runs * len(configs)} fresh")
        data = seed(running.url, 200, new_rmas * args.runs * len(configs))
        env = {
            "OMS_DATABASE_URL": running.url,
            "OMS_API_KEYS_FILE": str(keys),
            "OMS_LOG_LEVEL": "WARNING",
            "OMS_DATA_DIR": str(Path(scratch) / "data"),
        }
        results: dict[str, list[Burst]] = {name: [] for name in configs}
        for run in range(args.runs):
            for name, (code, extra) in configs.items():
                with rma_api(code, env | extra) as (url, pid):
                    requests = mix(data, args.burst, run * 37)
                    roles = {"api": [pid], **running.processes()}
                    before = {
                        role: sum(map(tree_cpu_seconds, pids)) for role, pids in roles.items()
                    }
                    outcome = asyncio.run(burst(url, requests))
                    for role, pids in roles.items():
                        outcome.cpu[role] = sum(map(tree_cpu_seconds, pids)) - before[role]
                results[name].append(outcome)
                progress(
                    f"run {run + 1} {name}: p50 {outcome.p(0.5) * 1000:,.0f} ms, "
                    f"p99 {outcome.p(0.99) * 1000:,.0f} ms, wall {outcome.wall:.2f} s, "
                    f"cpu {outcome.cpu}, client {outcome.client_cpu:.2f}, {outcome.statuses}"
                )
    lines = [
        "# API burst: concurrent requests against `rma api`",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; load "
        f"average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}; {args.runs} runs "
        f"of {args.burst} requests sent at once over open connections, configurations in "
        "turns; embedded PostgreSQL 18, 200 orders with RMAs.",
        "- mix: 30% RMA status (portal), 20% order (portal), 10% timeline, 10% order (customer "
        "service), 10% blind-return list, 10% stock list, 10% new RMA requests (portal, "
        "Idempotency-Key).",
        "- `python -m bench.api_burst "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "`",
        "",
        "| Configuration | p50 per run (ms) | p99 per run (ms) | median p50 | median p99 | "
        "burst wall (s) | CPU ms per request: API, PostgreSQL, client | statuses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, bursts in results.items():
        p50s = [b.p(0.5) * 1000 for b in bursts]
        p99s = [b.p(0.99) * 1000 for b in bursts]
        statuses: dict[int, int] = {}
        for b in bursts:
            for status, count in b.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        lines.append(
            f"| {name} | {', '.join(f'{v:,.0f}' for v in p50s)} | "
            f"{', '.join(f'{v:,.0f}' for v in p99s)} | {median(p50s):,.0f} | "
            f"{median(p99s):,.0f} | {median([b.wall for b in bursts]):.2f} | "
            f"{cpu_per_request(bursts)} | {dict(sorted(statuses.items()))} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
