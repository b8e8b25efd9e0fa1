"""If-Match under concurrency: two clients holding the same ETag race one RMA command over
real sockets; exactly one may change the RMA, the other gets 412 with the current ETag."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from adapters.driving.api.serving import served
from domain.application import ReturnsService
from tests.integration.builders import delivered_order

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

KEYS = {"k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE)}
HEADERS = {"Authorization": "Bearer k-cs"}


@pytest.fixture(scope="module")
def base_url(service: ReturnsService, database_url: str) -> Iterator[str]:
    api = create_api(service, database_url, ApiSettings(), KeyRing.with_keys(KEYS))
    with served(api) as url:
        yield url


def race(base_url: str, path: str, etag: str) -> list[httpx.Response]:
    """Two clients, each on its own connection, send the same command with ``etag``."""
    barrier = threading.Barrier(2)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=15) as http:
            http.get("/health")  # connected before the barrier: the posts leave together
            barrier.wait(timeout=10)
            return http.post(path, json={"carrier": "dhl"}, headers=HEADERS | {"If-Match": etag})

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(send, range(2)))


def test_two_requests_with_the_same_if_match_change_the_rma_once(
    base_url: str, service: ReturnsService
) -> None:
    with httpx.Client(base_url=base_url, timeout=15) as http:
        created = http.post(
            "/v1/returns",
            json={
                "order_number": delivered_order(service),
                "lines": [{"line_no": 1, "quantity": 1, "reason": "size_too_small"}],
            },
            headers=HEADERS,
        )
        assert created.status_code == 201, created.text
        url = f"/v1/returns/{created.json()['return_id']}"
        rounds = 12
        for _ in range(rounds):
            etag = http.get(url, headers=HEADERS).headers["ETag"]
            # A label can be reissued any number of times: only If-Match stops the second.
            answers = race(base_url, url + "/label", etag)
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200, 412], [a.text for a in answers]
            won = next(a for a in answers if a.status_code == 200)
            lost = next(a for a in answers if a.status_code == 412)
            assert lost.headers["content-type"] == "application/problem+json"
            assert lost.json()["code"] == "version_mismatch"
            assert lost.headers["ETag"] == won.headers["ETag"] != etag
            assert lost.json()["current_version"] == int(won.headers["ETag"].strip('"'))
        final = http.get(url, headers=HEADERS)
        # Requested, authorized, then one label per round and not one more.
        assert final.json()["version"] == 2 + rounds
