"""The console's sign-in, session cookie, roles and CSRF, through HTTP on the real
PostgreSQL (sessions are rows there)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from adapters.driving.api import ApiSettings, KeyRing, create_api
from adapters.driving.console.sessions import COOKIE
from domain.application import ReturnsService
from tests.e2e.console import CONSOLE_KEYS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def api(service: ReturnsService, database_url: str) -> Iterator[TestClient]:
    app = create_api(service, database_url, ApiSettings(), KeyRing.with_keys(CONSOLE_KEYS))
    # https: the session cookie is Secure, and the client sends it back only over https.
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, key: str, next_path: str = "/console") -> str:
    page = client.post("/console/sign-in", data={"api_key": key, "next": next_path})
    assert page.status_code == 303, page.text
    return page.headers["location"]


def test_a_page_without_a_session_sends_the_browser_to_sign_in_and_back(
    api: TestClient,
) -> None:
    page = api.get("/console/queues?offset=0")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/sign-in?next=/console/queues%3Foffset%3D0"
    assert sign_in(api, "console-cs", "/console/queues?offset=0") == "/console/queues?offset=0"
    assert api.get("/console/queues").status_code == 200


def test_the_session_cookie_is_httponly_secure_and_strict_and_holds_no_key(
    api: TestClient,
) -> None:
    answer = api.post("/console/sign-in", data={"api_key": "console-cs", "next": "/console"})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/console"):
        assert attribute.lower() in cookie.lower(), cookie
    assert "console-cs" not in cookie


def test_a_wrong_key_is_told_beside_the_field_and_signs_nobody_in(api: TestClient) -> None:
    page = api.post("/console/sign-in", data={"api_key": "nope", "next": "/console"})
    assert page.status_code == 401
    assert 'aria-invalid="true"' in page.text
    assert "this key is not a staff key we know" in page.text
    assert "set-cookie" not in page.headers
    assert api.get("/console").status_code == 303


def test_a_portal_key_cannot_sign_in_to_the_staff_console(api: TestClient) -> None:
    assert api.post("/console/sign-in", data={"api_key": "console-portal"}).status_code == 401


def test_another_sites_link_is_not_followed_after_sign_in(api: TestClient) -> None:
    assert sign_in(api, "console-cs", "https://evil.example/") == "/console"
    assert sign_in(api, "console-cs", "//evil.example/console") == "/console"


def test_a_role_sees_only_its_pages(api: TestClient) -> None:
    sign_in(api, "console-analytics")
    home = api.get("/console")
    assert home.status_code == 200
    assert 'href="/console/queues"' not in home.text  # not in its navigation
    sign_in(api, "console-cs")
    assert 'href="/console/queues"' in api.get("/console").text


def test_sign_out_needs_the_forms_token_and_ends_the_session_everywhere(
    api: TestClient,
) -> None:
    sign_in(api, "console-cs")
    token = api.cookies[COOKIE]
    assert api.post("/console/sign-out", data={"csrf": "forged"}).status_code == 403
    assert api.get("/console").status_code == 200  # a forged post changed nothing
    page = api.get("/console").text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    out = api.post("/console/sign-out", data={"csrf": csrf})
    assert out.status_code == 303
    assert out.headers["location"] == "/console/sign-in"
    # The old token is dead server-side too: a copy of the cookie signs nobody in.
    api.cookies.set(COOKIE, token, domain="testserver", path="/console")
    assert api.get("/console").status_code == 303


def test_console_pages_forbid_inline_scripts_and_framing(api: TestClient) -> None:
    sign_in(api, "console-cs")
    page = api.get("/console/queues")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_the_queue_page_lists_every_queue_with_its_count(api: TestClient) -> None:
    sign_in(api, "console-cs")
    page = api.get("/console/queues")
    for name in ("held_for_review", "blind_unmatched", "refunds_failed", "not_inspected"):
        assert f'data-queue="{name}"' in page.text
    assert api.get("/console/queues/no_such_queue").status_code == 404
    fragment = api.get("/console/queues", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and 'data-testid="queue-summary"' in fragment.text


def test_the_navigation_marks_only_the_page_one_is_on(api: TestClient) -> None:
    sign_in(api, "console-cs")
    page = api.get("/console/returns/new").text
    current = [line for line in page.splitlines() if 'aria-current="page"' in line]
    assert len(current) == 1 and 'href="/console/returns/new"' in current[0], current
