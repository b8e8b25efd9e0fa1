"""What every route needs: the service, the read pool, settings, keys, metrics; and the
rules shared by commands (actor, idempotency, ``If-Match``) and lists (paging)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any
from uuid import UUID

import orjson
import psycopg
from fastapi import Query, Request, Response
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from pydantic import AwareDatetime, BeforeValidator

from adapters.driven.readmodels.writer import jsonable
from adapters.driving.api.auth import KeyRing, Principal, Role
from adapters.driving.api.metrics import Metrics
from adapters.driving.api.problems import Problem
from adapters.driving.api.settings import ApiSettings
from domain.application import Ctx, Expected, Outcome, ReturnsService, replayed
from domain.commands import Command
from domain.errors import DomainError, InvalidValue, NotFound
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
        values = params.values() if isinstance(params, dict) else params
        if any(isinstance(v, str) and "\x00" in v for v in values):
            return []  # PostgreSQL text cannot hold NUL: no stored row matches such a value
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
def proven_customer(request: Request) -> str:
    """The e-mail a portal request claims (``X-Customer-Email``), normalised; "" if none."""
    return (request.headers.get("x-customer-email") or "").strip().lower()


def owns_order(api: Api, request: Request, order_number: str) -> bool:
    claimed = proven_customer(request)
    try:
        email = api.service.get_order(order_number).state.customer_email or ""
    except NotFound:
        return False  # same answer as a wrong e-mail: order numbers cannot be probed
    return bool(claimed) and claimed == email.strip().lower()


def check_order_owner(api: Api, principal: Principal, request: Request, order_number: str) -> None:
    """The portal proves ownership with the order number plus the customer's e-mail."""
    if principal.role is Role.PORTAL and not owns_order(api, request, order_number):
        raise Problem(403, "not_owner", "give the order's e-mail in X-Customer-Email")


def _return_not_found(ref: str) -> NotFound:
    return NotFound(f"no return {ref!r}")


def load_return(api: Api, ref: str) -> Return:
    """By return id (UUID) or RMA number; a ref that is neither is not found either."""
    try:
        try:
            return_id = UUID(ref)
        except ValueError:
            return api.service.get_return_by_rma(ref)
        return api.service.get_return(return_id)
    except (NotFound, InvalidValue) as missing:
        raise _return_not_found(ref) from missing


def visible_return(api: Api, principal: Principal, request: Request, ref: str) -> Return:
    """The RMA ``ref`` names, if this principal may see it; first thing every RMA route
    does, before any check of the RMA's state, so a state never answers for a stranger.

    To the portal an RMA of another customer is not found, with the very answer of a ref
    that exists nowhere: a 403 there would tell which RMA numbers exist. A store key still
    gets 403 for another store's RMA (store staff may know the RMA exists).
    """
    rma = load_return(api, ref)
    if principal.role is Role.STORE:
        principal.check_store(rma.state.store_id)
    if principal.role is Role.PORTAL and (
        rma.state.order_number is None or not owns_order(api, request, rma.state.order_number)
    ):
        raise _return_not_found(ref)
    return rma


# ---------------------------------------------------------------- commands
def _header(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


# The headers the command rules read from the request, documented with ``openapi_extra``
# (they are read in ``run_command``, not declared as route parameters).
IDEMPOTENCY_KEY = _header(
    "Idempotency-Key",
    "Run the command once per key, scoped by the API key, the customer the portal proved and "
    "the route (method, path and its parameters): a repeat of the same request returns the "
    "first result; the key with another body is 422 `idempotency_key_reused`.",
    maxLength=200,
)
CORRELATION_ID = _header("X-Correlation-Id", "Recorded with the events as their correlation id.")
IF_MATCH = _header(
    "If-Match",
    "The RMA's `ETag`: the command applies only to that version (412 otherwise); `*`: any.",
)
CUSTOMER_EMAIL = _header(
    "X-Customer-Email", "Portal keys: the order's e-mail, proving the customer owns it."
)
COMMAND = {"parameters": [IDEMPOTENCY_KEY, CORRELATION_ID]}
RMA_COMMAND = {"parameters": [IDEMPOTENCY_KEY, CORRELATION_ID, IF_MATCH, CUSTOMER_EMAIL]}
PORTAL_READ = {"parameters": [CUSTOMER_EMAIL]}


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


async def keep_body(request: Request) -> None:
    """App-wide dependency: keep the raw body of a command for its idempotency fingerprint.

    FastAPI has read (and cached) the body before dependencies run, so this costs no I/O;
    the routes are sync and could not await it themselves.
    """
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        request.state.raw_body = await request.body()


def _canonical(body: bytes) -> bytes:
    """A JSON body with its keys sorted and no spacing, so equal documents compare equal;
    any other body as it came."""
    if not body:
        return b""
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return body


def _digest(*parts: object) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def idempotency_scope(principal: Principal, request: Request, key: str) -> tuple[str, str]:
    """(the key as stored, the request's fingerprint) for an ``Idempotency-Key``.

    The stored key is scoped by the principal, the customer the portal proved (one portal
    key serves every customer) and the route (method, path template and path parameters);
    it is hashed, so long e-mails or refs never bloat the command log's primary key. The
    fingerprint (method, route, canonical body) tells a repeat of the request from another
    request under the same key, which the service refuses (422 ``idempotency_key_reused``).
    """
    route: Any = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    params = sorted(request.path_params.items())
    customer = proven_customer(request) if principal.role is Role.PORTAL else ""
    scope = _digest(principal.name, customer, request.method, template, params)[:40]
    body = getattr(request.state, "raw_body", None)
    if body is None:
        raise RuntimeError("the app lacks the keep_body dependency: cannot fingerprint")
    fingerprint = _digest(
        request.method, template, params, _canonical(body).decode("utf-8", "replace")
    )
    return f"http:{principal.name}:{scope}:{key}", fingerprint


def run_command(
    api: Api,
    principal: Principal,
    request: Request,
    name: str,
    command: Command,
    *,
    rma: Return | None = None,
    then: Callable[[Ctx, Command], None] | None = None,
) -> Outcome:
    """Run a command as the key's principal, once per ``Idempotency-Key``.

    A key already used returns the first outcome before ``If-Match`` is looked at: the
    retry of a command that went through must not fail on the version it advanced. The
    service keeps that order too when the key's first use commits while this one runs.
    The same key with another request (body, route) is 422 ``idempotency_key_reused``.
    ``then`` runs after the command went through (not for a key answered from the log).
    """
    key = request.headers.get("idempotency-key")
    scoped = fingerprint = None
    if key:
        if len(key) > 200:
            raise Problem(422, "invalid_idempotency_key", "Idempotency-Key is over 200 chars")
        scoped, fingerprint = idempotency_scope(principal, request, key)
        prior = api.service.lookups.command_result(scoped)
        if prior is not None:
            outcome = replayed(prior, fingerprint)
            if isinstance(outcome, DomainError):
                raise outcome
            return outcome
    expected = expected_version(api, request, rma) if rma is not None else None
    correlation = request.headers.get("x-correlation-id") or str(uuid.uuid4())
    ctx = Ctx(
        Cause(
            actor=principal.name, source=f"api/{principal.role}", correlation_id=correlation[:200]
        ),
        idempotency_key=scoped,
        expected=expected,
        fingerprint=fingerprint,
    )
    with api.metrics.timed(name):
        outcome = api.service.run(ctx, command)
    if then is not None:
        then(ctx, command)
    return outcome


def set_etag(api: Api, response: Response, return_id: UUID) -> None:
    with suppress(NotFound):
        response.headers["ETag"] = etag(api.service.get_return(return_id).version)


# ---------------------------------------------------------------- lists
MAX_OFFSET = 10**9  # within PostgreSQL's bigint, far beyond any real list (and limit)


# The bounds are documented here and enforced by ``page_of``, so a bad page keeps its
# own problem code (``invalid_page``) rather than the generic ``invalid_request``.
def _integer(value: object) -> object:
    # Pydantic alone would also take "1.0" from a query string; the document says integer.
    if isinstance(value, str) and not _INTEGER.fullmatch(value):
        raise ValueError("expected an integer such as 50")
    return value


_INTEGER = re.compile(r"[+-]?\d+")
Limit = Annotated[
    int | None,
    BeforeValidator(_integer),
    Query(
        description="Items per page; above the deployment's maximum (default 200) it is "
        "capped, and the response's `limit` says what was used.",
        json_schema_extra={"minimum": 1, "maximum": MAX_OFFSET},
    ),
]
Offset = Annotated[
    int,
    BeforeValidator(_integer),
    Query(json_schema_extra={"minimum": 0, "maximum": MAX_OFFSET}),
]


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page_of(request: Request, limit: int | None, offset: int) -> Page:
    settings: ApiSettings = api_of(request).settings
    if limit is None:
        limit = settings.default_page_size
    if not 1 <= limit <= MAX_OFFSET or not 0 <= offset <= MAX_OFFSET:
        raise Problem(422, "invalid_page", f"limit must be 1..{MAX_OFFSET}, offset 0..{MAX_OFFSET}")
    return Page(min(limit, settings.max_page_size), offset)


# ---------------------------------------------------------------- query values
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _rfc3339(value: object) -> object:
    # Pydantic alone would also take "0.5" (a Unix time) or a time with no offset; the
    # document promises RFC 3339 date-times, so only those pass.
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time such as 2026-11-21T10:00:00Z")
    return value


def _iso_date(value: object) -> object:
    if isinstance(value, str) and not _DATE.fullmatch(value):
        raise ValueError("expected a date such as 2026-11-21")
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
Day = Annotated[date, BeforeValidator(_iso_date)]


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
