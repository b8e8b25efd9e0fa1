"""Errors as RFC 9457 ``application/problem+json``: type, title, status, detail, code."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from domain.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    DomainError,
    InvalidTransition,
    NotFound,
    VersionMismatch,
)

log = logging.getLogger(__name__)
PROBLEM_TYPE = "https://oms.example/problems/"
MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An HTTP failure with a stable machine-readable ``code``; extra fields go in the body."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem_response(problem: Problem) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE + problem.code,
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
        "code": problem.code,
        **problem.extra,
    }
    return JSONResponse(body, problem.status, headers=problem.headers, media_type=MEDIA_TYPE)


class ProblemDetails(BaseModel):
    """An RFC 9457 problem. ``code`` is the stable, machine-readable part; members beyond
    these may be added (``errors`` of a request that does not match its schema,
    ``current_version`` of a stale ``If-Match``, ``return_id`` of a policy refusal)."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None
    current_version: int | None = None
    return_id: str | None = None


PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
WHEN = {
    400: "The body could not be read (not UTF-8, for one) (`bad_request`).",
    401: "No valid API key (`unauthenticated`).",
    403: "The key's role, store or proof of ownership does not allow this (`forbidden`, "
    "`not_owner`).",
    404: "Not found (`not_found`); to a portal key, another customer's RMA too (the same "
    "answer as an RMA that does not exist).",
    409: "Not possible in the current state (`invalid_transition`, `resolution_locked`, ...).",
    412: "`If-Match` names a version that is no longer current (`version_mismatch`); the "
    "body's `current_version` and the `ETag` header give the current one.",
    422: "The request does not match its schema (`invalid_request`), or the domain or "
    "the policy refuses it (`code` says why).",
    428: "`If-Match` is required by this deployment and missing (`if_match_required`).",
    503: "Not ready (`not_ready`).",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route or router: these statuses answer problem+json."""
    return {
        status: {"description": WHEN[status], "content": {MEDIA_TYPE: {"schema": PROBLEM_REF}}}
        for status in statuses
    }


def document_problems(app: FastAPI) -> None:
    """Add the ``Problem`` schema the routes' responses refer to, to the app's document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = ProblemDetails.model_json_schema()
            _document_reused_keys(document)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


REUSED_KEY = (
    " The `Idempotency-Key` was used for another request (another body, or another route) "
    "under the same API key and customer (`idempotency_key_reused`): a new request needs a new "
    "key."
)


def _document_reused_keys(document: dict[str, Any]) -> None:
    """Every operation reading ``Idempotency-Key`` answers 422 to a key reused for another
    request: said once here, so no command route can miss it."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            names = {p.get("name") for p in operation.get("parameters", [])}
            if "Idempotency-Key" not in names:
                continue
            responses = operation.setdefault("responses", {})
            response = responses.setdefault("422", problem_responses(422)[422])
            response["description"] = WHEN[422] + REUSED_KEY


def status_of(error: DomainError) -> int:
    if isinstance(error, VersionMismatch):
        return 412
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, InvalidTransition | AlreadyExists | ConcurrencyConflict):
        return 409
    return 422  # policy, quantity, refund limit, invalid command or value


def allowed_methods(request: Request) -> str:
    """Every method the OpenAPI document serves at this path: Starlette's 405 names only
    the first matching route's, but one path may be served by several routers (``GET``
    and ``POST /v1/returns`` live in two modules)."""
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    methods = {
        method.upper()
        for template, item in paths.items()
        if compile_path(template)[0].fullmatch(request.url.path)
        for method in item
        if method.upper() in _HTTP_METHODS
    }
    return ", ".join(sorted(methods))


_HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def install(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_domain(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        if isinstance(exc, VersionMismatch):
            # The current ETag, so the client can re-read and decide again.
            return problem_response(
                Problem(
                    412,
                    exc.code,
                    "the RMA changed since you read it",
                    current_version=exc.current_version,
                    headers={"ETag": f'"{exc.current_version}"'},
                )
            )
        return problem_response(Problem(status_of(exc), exc.code, exc.message))

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return problem_response(
            Problem(422, "invalid_request", "the request does not match its schema", errors=errors)
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return problem_response(Problem(exc.status_code, code, str(exc.detail), headers=headers))

    async def on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(Problem(500, "internal_error", "an unexpected error occurred"))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(DomainError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
