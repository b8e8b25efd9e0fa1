"""Errors as RFC 9457 ``application/problem+json``: type, title, status, detail, code."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def status_of(error: DomainError) -> int:
    if isinstance(error, VersionMismatch):
        return 412
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, InvalidTransition | AlreadyExists | ConcurrencyConflict):
        return 409
    return 422  # policy, quantity, refund limit, invalid command or value


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

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return problem_response(
            Problem(exc.status_code, code, str(exc.detail), headers=exc.headers)
        )

    async def on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(Problem(500, "internal_error", "an unexpected error occurred"))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(DomainError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
