"""Analytics over a period over HTTP, on PostgreSQL: a known history spread over ten days
(tests/unit/period_stories.py) is projected by the real read-model store, twice (a replay
changes nothing), and each figure is read back exact for several periods."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.topics import EVENT_TOPIC_BY_KIND
from adapters.driven.readmodels.store import ReadModelStore
from adapters.driving.api import ApiSettings, KeyRing, Principal, Role, create_api
from projections.period import PeriodAnalytics
from tests.e2e.console import CONSOLE_KEYS
from tests.integration.builders import fresh_database
from tests.unit.period_stories import on_day, reference

pytestmark = pytest.mark.timeout(300)

KEYS = {
    "k-an": Principal("bi", Role.ANALYTICS),
    "k-cs": Principal("agent-ann", Role.CUSTOMER_SERVICE),
    "k-admin": Principal("root", Role.ADMIN),
    "k-wh": Principal("wms", Role.WAREHOUSE),
}
ALL = {"from": on_day(0).isoformat(), "to": on_day(9).isoformat()}


@pytest.fixture(scope="module")
def client(database_url: str) -> Iterator[TestClient]:
    url = fresh_database(database_url, "analytics")
    events = [
        replace(e, topic=EVENT_TOPIC_BY_KIND[e.kind], partition=0) for e in reference().events
    ]
    projection = PeriodAnalytics()
    with ReadModelStore(url) as store:
        store.ensure(projection)
        store.apply(projection, events)
        store.apply(projection, events)  # redelivered: counted once
    service = create_service(url, pool_size=2)
    try:
        api = create_api(service, url, ApiSettings(), KeyRing.with_keys(KEYS))
        with TestClient(api, raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        service.close()


def get(client: TestClient, path: str, key: str = "k-an", **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_returns_over_the_whole_history_and_the_return_rate(client: TestClient) -> None:
    body = get(client, "/v1/analytics/returns", **ALL)
    assert body["from"] == "2025-03-03" and body["to"] == "2025-03-12"
    # 5 units asked back (3 + 1 + 1 refused) of 6 sold (the cancelled order sells nothing).
    assert body["totals"] == {
        "rmas": 2,
        "lines": 3,
        "units": 5,
        "rejected_lines": 1,
        "sold_units": 6,
        "return_rate": "0.8333",
    }
    assert body["groups"] == []


def test_returns_by_reason_rate_over_every_unit_sold(client: TestClient) -> None:
    groups = get(client, "/v1/analytics/returns", group_by="reason", **ALL)["groups"]
    assert groups == [
        {
            "key": "defective",
            "rmas": 1,
            "lines": 2,
            "units": 4,
            "rejected_lines": 0,
            "sold_units": 6,
            "return_rate": "0.6667",
        },
        {
            "key": "changed_mind",
            "rmas": 1,
            "lines": 1,
            "units": 1,
            "rejected_lines": 1,
            "sold_units": 6,
            "return_rate": "0.1667",
        },
    ]


def test_returns_by_sku_rate_over_that_skus_sales(client: TestClient) -> None:
    groups = get(client, "/v1/analytics/returns", group_by="sku", **ALL)["groups"]
    figures = {g["key"]: (g["rmas"], g["units"], g["sold_units"], g["return_rate"]) for g in groups}
    assert figures == {"SKU-A": (1, 3, 4, "0.7500"), "SKU-B": (2, 2, 2, "1.0000")}
    by_channel = get(client, "/v1/analytics/returns", group_by="channel", **ALL)["groups"]
    assert [(g["key"], g["rmas"], g["return_rate"]) for g in by_channel] == [("web", 2, "0.8333")]


def test_a_period_without_sales_has_no_rate(client: TestClient) -> None:
    body = get(client, "/v1/analytics/returns", **{"from": "2025-03-05", "to": "2025-03-05"})
    assert body["totals"] == {
        "rmas": 1,
        "lines": 2,
        "units": 4,
        "rejected_lines": 0,
        "sold_units": 0,
        "return_rate": None,
    }


def test_costs_over_the_whole_history_each_figure(client: TestClient) -> None:
    body = get(client, "/v1/analytics/costs", **ALL)
    assert body["totals"] == [
        {
            "currency": "EUR",
            "refunded": "97.00",
            "fees_kept": "3.00",
            "scrapped_units": 1,
            "scrapped_value": "30.00",
            "supplier_credits": "12.50",
            "net_cost": "114.50",
        }
    ]


def test_costs_fall_on_the_day_they_happened(client: TestClient) -> None:
    early = get(client, "/v1/analytics/costs", **{"from": "2025-03-03", "to": "2025-03-09"})
    assert [(t["refunded"], t["scrapped_value"], t["net_cost"]) for t in early["totals"]] == [
        ("97.00", "0.00", "97.00")
    ]
    late = get(client, "/v1/analytics/costs", **{"from": "2025-03-10", "to": "2025-03-12"})
    assert [(t["refunded"], t["supplier_credits"], t["net_cost"]) for t in late["totals"]] == [
        ("0.00", "12.50", "17.50")
    ]
    before = get(client, "/v1/analytics/costs", **{"from": "2024-03-10", "to": "2025-03-02"})
    assert before["totals"] == []


def test_costs_by_supplier_highest_net_cost_first(client: TestClient) -> None:
    groups = get(client, "/v1/analytics/costs", "k-cs", group_by="supplier", **ALL)["groups"]
    assert [(g["key"], g["refunded"], g["fees_kept"], g["net_cost"]) for g in groups] == [
        ("Acme", "87.30", "3.00", "104.80"),
        ("Bolt", "9.70", "0.00", "9.70"),
    ]
    by_reason = get(client, "/v1/analytics/costs", "k-admin", group_by="reason", **ALL)
    assert [(g["key"], g["net_cost"]) for g in by_reason["groups"]] == [("defective", "114.50")]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2025-03-12", "to": "2025-03-03"}, "invalid_period"),
        ({"from": "2024-01-01", "to": "2025-01-01"}, "invalid_period"),  # 367 days
        ({"from": "2025-02-30", "to": "2025-03-03"}, None),
        ({"from": "3 March", "to": "2025-03-03"}, None),
        ({"to": "2025-03-03"}, None),
        ({**ALL, "group_by": "colour"}, None),
    ],
)
def test_a_bad_period_or_grouping_is_422(
    client: TestClient, params: dict[str, str], code: str | None
) -> None:
    for path in ("/v1/analytics/returns", "/v1/analytics/costs"):
        response = client.get(path, params=params, headers={"Authorization": "Bearer k-an"})
        assert response.status_code == 422, response.text
        if code is not None:
            assert response.json()["code"] == code


def test_a_leap_year_is_a_period(client: TestClient) -> None:
    body = get(client, "/v1/analytics/returns", **{"from": "2024-01-01", "to": "2024-12-31"})
    assert body["totals"]["rmas"] == 0


def test_only_analytics_customer_service_and_admin_read_it(client: TestClient) -> None:
    for path in ("/v1/analytics/returns", "/v1/analytics/costs"):
        assert client.get(path, params=ALL).status_code == 401
        denied = client.get(path, params=ALL, headers={"Authorization": "Bearer k-wh"})
        assert denied.status_code == 403


# ---------------------------------------------------------------- the console's page
@pytest.fixture(scope="module")
def console(client: TestClient) -> Iterator[TestClient]:
    """The same app under https (the session cookie is Secure), with the console's keys."""
    app = client.app
    assert isinstance(app, FastAPI)
    app.state.api.keys = KeyRing.with_keys({**KEYS, **CONSOLE_KEYS})
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as browser:
        yield browser


def signed_in(console: TestClient, key: str) -> TestClient:
    page = console.post("/console/sign-in", data={"api_key": key, "next": "/console"})
    assert page.status_code == 303, page.text
    return console


def test_the_console_page_shows_the_period_as_figures_tables_and_bars(console: TestClient) -> None:
    page = signed_in(console, "console-analytics").get(
        "/console/analytics", params={**ALL, "group_by": "sku"}
    )
    assert page.status_code == 200, page.text
    html = page.text
    assert 'data-figure="rmas">2<' in html and 'data-figure="return_rate">83.3 %<' in html
    assert 'data-figure="net_cost">114.50 EUR<' in html
    # Bars scale to the largest: SKU-A's 3 units fill the chart, SKU-B's 2 take two thirds.
    assert 'data-label="SKU-A" data-width="360"' in html
    assert 'data-label="SKU-B" data-width="240"' in html
    assert "<svg" in html and "<script>" not in html  # drawn on the server
    assert 'href="/console/analytics"' in signed_in(console, "console-cs").get("/console").text


def test_the_console_page_says_beside_the_field_what_is_wrong_with_the_period(
    console: TestClient,
) -> None:
    page = signed_in(console, "console-analytics").get(
        "/console/analytics", params={"from": "2025-03-12", "to": "2025-03-03"}
    )
    assert page.status_code == 422
    assert 'id="e-to" role="alert">from 2025-03-12 is after to 2025-03-03<' in page.text
    assert 'aria-invalid="true" aria-describedby="e-to"' in page.text
    bad_day = console.get("/console/analytics", params={"from": "2025-02-30", "to": "2025-03-03"})
    assert bad_day.status_code == 422 and 'id="e-from"' in bad_day.text


def test_the_console_page_is_not_for_the_warehouse(console: TestClient) -> None:
    page = signed_in(console, "console-warehouse").get("/console/analytics", params=ALL)
    assert page.status_code == 403
