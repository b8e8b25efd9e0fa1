"""What every console page needs: templates, the signed-in staff, forms and their errors.

A page is a route on ``router`` (or on a router of its own, listed in ``PAGES``) that takes
a ``Staff`` from ``StaffOnly(roles...)`` (or ``StaffForm`` for a form post, which also
checks the form's CSRF token) and returns ``render(request, staff, "name.html", ...)``.
The pages call the same route functions and read models as the JSON API, with the
principal of the session: a role sees in the console what its key sees through the API.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from adapters.driving.api.auth import Role
from adapters.driving.api.context import api_of
from adapters.driving.console.sessions import COOKIE, Sessions, Staff

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

# What each role finds in the navigation: (path, label). Admin sees every entry.
NAVIGATION: dict[Role, tuple[tuple[str, str], ...]] = {
    Role.CUSTOMER_SERVICE: (),
    Role.STORE: (),
    Role.WAREHOUSE: (),
    Role.ANALYTICS: (),
}
STAFF_ROLES = frozenset({*NAVIGATION, Role.ADMIN})


def navigation(role: Role) -> list[tuple[str, str]]:
    if role is Role.ADMIN:
        seen: dict[str, str] = {}
        for entries in NAVIGATION.values():
            seen.update(dict(entries))
        return list(seen.items())
    return list(NAVIGATION.get(role, ()))


def add_navigation(role: Role, path: str, label: str) -> None:
    """A page module adds its entry when imported (see ``PAGES`` in ``__init__``)."""
    NAVIGATION[role] = (*NAVIGATION.get(role, ()), (path, label))


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions | None = getattr(request.app.state, "console_sessions", None)
    if sessions is None:
        api = api_of(request)
        sessions = Sessions(api.pool, api.keys, timedelta(hours=api.settings.console_idle_hours))
        request.app.state.console_sessions = sessions
    return sessions


class SignInRequired(Exception):
    """No live session: the handler sends the browser to the sign-in page, then back."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class NotForThisRole(Exception):
    def __init__(self, staff: Staff) -> None:
        super().__init__(staff.principal.role)
        self.staff = staff


class BadCsrf(Exception):
    """A form post without this session's token: another site's page submitting it."""


def safe_next(value: str | None) -> str:
    """Only a console path: a sign-in link must not send anyone to another site."""
    if value and value.startswith("/console") and not value.startswith("//"):
        return value
    return "/console"


async def current_staff(request: Request) -> Staff:
    token = request.cookies.get(COOKIE)
    staff = await run_in_threadpool(sessions_of(request).find, token) if token else None
    if staff is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    request.state.principal = staff.principal
    return staff


class StaffOnly:
    """Dependency admitting a signed-in person of one of ``roles`` (admin always)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset({*roles, Role.ADMIN})

    async def __call__(self, request: Request) -> Staff:
        staff = await current_staff(request)
        if staff.principal.role not in self.roles:
            raise NotForThisRole(staff)
        return staff


class StaffForm(StaffOnly):
    """``StaffOnly`` for a form post: the form (or the ``X-CSRF-Token`` header htmx sends)
    must carry the session's CSRF token. SameSite=Strict already keeps the cookie off
    other sites' posts; the token is the second lock for older browsers."""

    async def __call__(self, request: Request) -> Staff:
        staff = await super().__call__(request)
        sent = request.headers.get("x-csrf-token")
        if sent is None:
            form = await request.form()
            value = form.get("csrf")
            sent = value if isinstance(value, str) else None
        if sent is None or not hmac.compare_digest(sent, staff.csrf):
            raise BadCsrf()
        return staff


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form as plain strings (files are not taken by any console form)."""
    form = await request.form()
    return {k: v.strip() for k, v in form.items() if isinstance(v, str)}


def current_entry(path: str, nav: list[tuple[str, str]]) -> str | None:
    """The navigation entry a page belongs to: the longest entry its path starts with
    (``/console/returns/new`` is "New return", not also "Find returns")."""
    matches = [p for p, _ in nav if path == p or path.startswith(p.rstrip("/") + "/")]
    return max(matches, key=len, default=None)


def render(
    request: Request,
    staff: Staff | None,
    template: str,
    *,
    status_code: int = 200,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page (or, for an htmx request of a fragment template, the fragment).

    ``errors`` maps a field's name to what is wrong with it, shown beside that field by
    the ``field`` macro; ``values`` refills the form as it was posted."""
    nav = navigation(staff.principal.role) if staff else []
    return templates.TemplateResponse(
        request,
        template,
        {
            "staff": staff,
            "nav": nav,
            "current_nav": current_entry(request.url.path, nav),
            "errors": dict(errors or {}),
            "values": dict(values or {}),
            **context,
        },
        status_code=status_code,
    )


def sign_in_location(next_path: str) -> str:
    return "/console/sign-in?next=" + quote(next_path, safe="/")


AnyStaff = Annotated[Staff, Depends(StaffOnly(*STAFF_ROLES))]
"""Any signed-in staff member (every role but portal and ops)."""
