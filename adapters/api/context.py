"""What every route needs: the service, the read pool, settings, keys, metrics; and the
rules shared by commands (actor, idempotency, ``If-Match``) and lists (paging)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from fastapi import Request, Response
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from adapters.api.auth import KeyRing, Principal, Role
from adapters.api.metrics import Metrics
from adapters.api.problems import Problem
from adapters.api.settings import ApiSettings
from adapters.readmodels import jsonable
from domain.application import Ctx, Expected, Outcome, ReturnsService
from domain.errors import NotFound
from domain.events import Cause
from domain.returns import Return


@dataclass
class Api:
    service: ReturnsService
    read_url: str
    pool: ConnectionPool[psycopg.Connection[Any]]
    settings: ApiSettings
    keys: KeyRing
    metrics: Metrics

    @contextmanager
    def read(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as conn:
            yield conn

    def rows(
        self, query: str | sql.Composable, params: dict[str, Any] | list[Any]
    ) -> list[dict[str, Any]]:
        """Rows of a read model; a table not created yet (its projector never ran) is empty."""
        with self.read() as conn, conn.cursor(row_factory=dict_row) as cur:
            try:
                cur.execute(query, params)  # type: ignore[arg-type]
            except psycopg.errors.UndefinedTable:
                return []
            return [jsonable(row) for row in cur.fetchall()]


def api_of(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


# ---------------------------------------------------------------- ownership
def check_order_owner(api: Api, principal: Principal, request: Request, order_number: str) -> None:
    """The portal proves ownership with the order number plus the customer's e-mail."""
    if principal.role is not Role.PORTAL:
        return
    claimed = (request.headers.get("x-customer-email") or "").strip().lower()
    try:
        email = api.service.get_order(order_number).state.customer_email or ""
    except NotFound:
        email = ""  # same answer as a wrong e-mail: order numbers cannot be probed
    if not claimed or claimed != email.strip().lower():
        raise Problem(403, "not_owner", "give the order's e-mail in X-Customer-Email")


def load_return(api: Api, ref: str) -> Return:
    """By return id (UUID) or RMA number."""
    try:
        return api.service.get_return(UUID(ref))
    except ValueError:
        return api.service.get_return_by_rma(ref)


def check_return_access(api: Api, principal: Principal, request: Request, rma: Return) -> None:
    if principal.role is Role.STORE:
        principal.check_store(rma.state.store_id)
    if principal.role is Role.PORTAL:
        if rma.state.order_number is None:
            raise Problem(403, "not_owner", "this return is not tied to an order")
        check_order_owner(api, principal, request, rma.state.order_number)


# ---------------------------------------------------------------- commands
def etag(version: int) -> str:
    return f'"{version}"'


_ETAG = re.compile(r'(?:W/)?"(\d{1,18})"')


def expected_version(api: Api, request: Request, rma: Return) -> Expected | None:
    """What ``If-Match`` asks of the RMA, for the command's unit of work to check.

    The comparison is not made here: a read before the command would let two requests
    holding the same ETag both pass. The service checks it against the RMA as loaded in
    the command's own transaction (412 ``version_mismatch`` when stale).
    """
    header = request.headers.get("if-match")
    if header is None:
        if api.settings.require_if_match:
            raise Problem(428, "if_match_required", "send the RMA's ETag in If-Match")
        return None
    versions: set[int] = set()
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return None  # any current version will do
        matched = _ETAG.fullmatch(tag)
        if matched:
            versions.add(int(matched.group(1)))
    # No tag of ours in the header: nothing can match, and the unit answers 412.
    return Expected(rma.id, frozenset(versions))


def run_command(
    api: Api,
    principal: Principal,
    request: Request,
    name: str,
    command: Callable[[Ctx], Outcome],
    *,
    rma: Return | None = None,
) -> Outcome:
    """Run a command as the key's principal, once per ``Idempotency-Key``.

    A key already used returns the first outcome before ``If-Match`` is looked at: the
    retry of a command that went through must not fail on the version it advanced. The
    service keeps that order too when the key's first use commits while this one runs.
    """
    key = request.headers.get("idempotency-key")
    scoped = None
    if key:
        if len(key) > 200:
            raise Problem(422, "invalid_idempotency_key", "Idempotency-Key is over 200 chars")
        # Scoped by principal and URL: two clients (or two commands) never share a key.
        scoped = f"http:{principal.name}:{request.url.path}:{key}"
        prior = api.service.lookups.command_result(scoped)
        if prior is not None:
            return Outcome.model_validate_json(prior)
    expected = expected_version(api, request, rma) if rma is not None else None
    correlation = request.headers.get("x-correlation-id") or str(uuid.uuid4())
    ctx = Ctx(
        Cause(
            actor=principal.name, source=f"api/{principal.role}", correlation_id=correlation[:200]
        ),
        idempotency_key=scoped,
        expected=expected,
    )
    with api.metrics.timed(name):
        return command(ctx)


def set_etag(api: Api, response: Response, return_id: UUID) -> None:
    with suppress(NotFound):
        response.headers["ETag"] = etag(api.service.get_return(return_id).version)


# ---------------------------------------------------------------- lists
@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page_of(request: Request, limit: int | None, offset: int) -> Page:
    settings: ApiSettings = api_of(request).settings
    if limit is None:
        limit = settings.default_page_size
    if limit < 1 or limit > settings.max_page_size or offset < 0:
        raise Problem(
            422, "invalid_page", f"limit must be 1..{settings.max_page_size}, offset >= 0"
        )
    return Page(limit, offset)


def paged(request: Request, page: Page, items: list[Any]) -> dict[str, Any]:
    """Fetch ``limit + 1`` rows and pass them here: the extra one says a next page exists."""
    more = len(items) > page.limit
    next_link = None
    if more:
        url = request.url.include_query_params(limit=page.limit, offset=page.offset + page.limit)
        next_link = str(url.path) + "?" + url.query
    return {
        "items": items[: page.limit],
        "limit": page.limit,
        "offset": page.offset,
        "next": next_link,
    }
