"""The staff console: server-rendered pages served by the API under ``/console``.

Jinja2 templates with htmx (vendored, one file: no Node build) for partial updates. People
sign in with their API key; the role decides what each sees, as in the API. Page modules
are listed in ``PAGES``; each holds a router and adds its navigation entries.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from adapters.driving.api.context import api_of
from adapters.driving.console import analytics, cs_blind, cs_returns, queues
from adapters.driving.console import store as store_pages
from adapters.driving.console import warehouse as warehouse_pages
from adapters.driving.console.sessions import COOKIE, Staff
from adapters.driving.console.web import (
    HERE,
    STAFF_ROLES,
    AnyStaff,
    BadCsrf,
    NotForThisRole,
    SignInRequired,
    StaffForm,
    current_staff,
    form_fields,
    render,
    safe_next,
    sessions_of,
    sign_in_location,
)

PAGES: tuple[APIRouter, ...] = (
    queues.router,
    analytics.router,
    cs_returns.router,
    cs_blind.router,
    store_pages.router,
    warehouse_pages.router,
)

router = APIRouter(prefix="/console", include_in_schema=False)

# The console's pages load only their own scripts and styles: an injected <script> in a
# stored value (a reason, a name) would not run even if escaping ever failed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@router.get("/sign-in")
def sign_in_page(request: Request, next: str | None = None) -> Response:
    return render(request, None, "sign_in.html", next=safe_next(next))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    fields = await form_fields(request)
    target = safe_next(fields.get("next"))
    key = fields.get("api_key", "")
    opened = await run_in_threadpool(sessions_of(request).open, key) if key else None
    if opened is None or opened[1].principal.role not in STAFF_ROLES:
        error = "enter your API key" if not key else "this key is not a staff key we know"
        return render(
            request,
            None,
            "sign_in.html",
            status_code=401,
            errors={"api_key": error},
            next=target,
        )
    token, _ = opened
    response = RedirectResponse(target, status_code=303)
    settings = api_of(request).settings
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(settings.console_idle_hours * 3600),
        path="/console",
        secure=settings.console_secure_cookie,
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/sign-out")
async def sign_out(
    request: Request, staff: Annotated[Staff, Depends(StaffForm(*STAFF_ROLES))]
) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        await run_in_threadpool(sessions_of(request).close, token)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("")
def home(request: Request, staff: AnyStaff) -> Response:
    return render(request, staff, "home.html")


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/console"):
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        return response


def install(app: FastAPI) -> None:
    """Mount the console on the API app: pages, static files, and what a page's failure
    looks like in a browser (a redirect to sign in, a page saying what is wrong)."""

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        location = sign_in_location(exc.next_path)
        if request.headers.get("hx-request"):
            # htmx would swap the sign-in page into a fragment: have it load the page.
            return Response(status_code=204, headers={"HX-Redirect": location})
        return RedirectResponse(location, status_code=303)

    @app.exception_handler(NotForThisRole)
    async def _forbidden(request: Request, exc: NotForThisRole) -> Response:
        return render(
            request,
            exc.staff,
            "error.html",
            status_code=403,
            title="Not for your role",
            message=f"This page is not open to the {exc.staff.principal.role} role.",
        )

    @app.exception_handler(BadCsrf)
    async def _bad_csrf(request: Request, exc: BadCsrf) -> Response:
        return render(
            request,
            None,
            "error.html",
            status_code=403,
            title="Form expired",
            message="This form was not sent from your session's page: reload it and try again.",
        )

    app.add_middleware(_SecurityHeaders)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)
    for page in PAGES:
        app.include_router(page)


__all__ = ["current_staff", "install"]
