"""The demo's HTTP side: the API served in process, and the people's clients of it.

The customer portal, customer service and analytics act through the real API over a real
socket, each with its own key, exactly as the outside tools would. The keys exist only in
this process's memory: the demo's API lives as long as the demo and nobody else uses it.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.driving.api import KeyRing, Principal, Role

PRINCIPALS = {
    Role.PORTAL: "demo-portal",
    Role.CUSTOMER_SERVICE: "demo-customer-service",
    Role.ANALYTICS: "demo-analytics",
    Role.WAREHOUSE: "demo-warehouse",
}


class ApiError(Exception):
    """An answer the caller did not expect: its status and problem code, never swallowed."""

    def __init__(self, method: str, path: str, status: int, code: str | None, detail: str) -> None:
        super().__init__(f"{method} {path} -> {status} {code or ''}: {detail}")
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    etag: str | None

    @property
    def code(self) -> str | None:
        """The problem's machine-readable code (problem+json answers only)."""
        code = self.body.get("code")
        return str(code) if code is not None else None


def demo_keys() -> tuple[KeyRing, dict[Role, str]]:
    """A fresh random key per demo role; the ring keeps only their hashes."""
    plain = {role: f"demo-{role.value}-{secrets.token_urlsafe(24)}" for role in PRINCIPALS}
    ring = KeyRing.with_keys(
        {plain[role]: Principal(name, role) for role, name in PRINCIPALS.items()}
    )
    return ring, plain


# Ids, order and RMA numbers in a path become a placeholder, so the tally counts routes.
_ID_SEGMENT = re.compile(r"[0-9A-Z]")


def route_of(path: str) -> str:
    segments = path.split("?")[0].split("/")
    return "/".join(s if s == "v1" or not _ID_SEGMENT.search(s) else "{ref}" for s in segments)


class Caller:
    """One tool's HTTP client (the portal, customer service, analytics) under its key.

    ``calls`` counts every answer by method, route and status, for the summary.
    """

    def __init__(self, base_url: str, key: str, role: Role, calls: Counter[str]) -> None:
        self.role = role
        self.principal = PRINCIPALS[role]
        self.calls = calls
        self.http = httpx.Client(
            base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
        )

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, *, email: str | None = None, **params: Any) -> Answer:
        headers = {"X-Customer-Email": email} if email else {}
        response = self.http.get(path, params=params or None, headers=headers)
        return self._answer("GET", path, response, ())

    def get_text(self, path: str, **params: Any) -> str:
        """A printable document (HTML): its text, whole."""
        response = self.http.get(path, params=params or None)
        self.calls[f"GET {route_of(path)} {response.status_code}"] += 1
        if not response.is_success:
            raise ApiError("GET", path, response.status_code, None, response.text[:300])
        return response.text

    def post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        idempotency_key: str,
        if_match: str | None = None,
        email: str | None = None,
        refusals: tuple[int, ...] = (),
    ) -> Answer:
        """POST once under ``idempotency_key``; answers in ``refusals`` come back to the
        caller (a policy's 422, a stale 412), any other failure raises."""
        headers = {"Idempotency-Key": idempotency_key}
        if if_match:
            headers["If-Match"] = if_match
        if email:
            headers["X-Customer-Email"] = email
        response = self.http.post(path, json=body, headers=headers)
        return self._answer("POST", path, response, refusals)

    def _answer(
        self, method: str, path: str, response: httpx.Response, refusals: tuple[int, ...]
    ) -> Answer:
        self.calls[f"{method} {route_of(path)} {response.status_code}"] += 1
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:300]}
        if not isinstance(body, dict):
            body = {"items": body}
        answer = Answer(response.status_code, body, response.headers.get("etag"))
        if response.is_success or response.status_code in refusals:
            return answer
        raise ApiError(
            method, path, response.status_code, answer.code, str(body.get("detail", ""))[:300]
        )


__all__ = ["Answer", "ApiError", "Caller", "demo_keys", "route_of"]
