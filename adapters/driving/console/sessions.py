"""Console sessions: the API key is checked once, at sign-in; the browser then holds a
random session token in an HttpOnly, Secure, SameSite=Strict cookie, never the key.

Sessions live in PostgreSQL (``oms_console_sessions``), not in the process: the API runs
as several processes behind a balancer, and a sign-out must end the session in all of
them. Only SHA-256 digests of tokens are stored, so a read of the table signs nobody in.
The row keeps the digest of the API key, not the principal: the principal is looked up
in the key ring on every request, so a key removed from the key file ends its sessions
at the next restart of the API, and a role changed there applies at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from adapters.driving.api.auth import KeyRing, Principal

COOKIE = "oms_console"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS oms_console_sessions (
        token_sha256 text PRIMARY KEY,
        key_sha256 text NOT NULL,
        csrf text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        seen_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX IF NOT EXISTS oms_console_sessions_seen ON oms_console_sessions (seen_at)",
)

# A session seen less than this long ago is not written again: every page view would
# otherwise be a write.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Staff:
    """Who is signed in: the key's principal, and the token every form must echo."""

    principal: Principal
    csrf: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(
        self, pool: ConnectionPool[psycopg.Connection[Any]], keys: KeyRing, idle: timedelta
    ) -> None:
        self.pool = pool
        self.keys = keys
        self.idle = idle
        self._schema_ready = False

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        if self._schema_ready:
            return
        with conn.transaction():
            # Two API processes may start together: one creates, the other waits.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('oms_console_sessions'))")
            for statement in SCHEMA:
                conn.execute(statement)
        self._schema_ready = True

    def open(self, key: str) -> tuple[str, Staff] | None:
        """A new session for a valid key: (token for the cookie, who); None for a bad key."""
        principal = self.keys.principal_for(key)
        if principal is None:
            return None
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        with self.pool.connection() as conn:
            self._ensure_schema(conn)
            conn.execute(
                "INSERT INTO oms_console_sessions (token_sha256, key_sha256, csrf)"
                " VALUES (%s, %s, %s)",
                (_digest(token), self.keys.digest(key), csrf),
            )
            # Expired sessions go when someone signs in: no timer needed for the table.
            conn.execute(
                "DELETE FROM oms_console_sessions WHERE seen_at < now() - %s", (self.idle,)
            )
        return token, Staff(principal, csrf)

    def find(self, token: str) -> Staff | None:
        """The session's staff if the token is live and its key still admitted."""
        with self.pool.connection() as conn:
            self._ensure_schema(conn)
            row = conn.execute(
                "SELECT key_sha256, csrf, seen_at < now() - %s AS stale"
                " FROM oms_console_sessions WHERE token_sha256 = %s"
                " AND seen_at >= now() - %s",
                (TOUCH_EVERY, _digest(token), self.idle),
            ).fetchone()
            if row is None:
                return None
            key_sha256, csrf, stale = row
            principal = self.keys.principal_for_digest(key_sha256)
            if principal is None:
                return None
            if stale:
                conn.execute(
                    "UPDATE oms_console_sessions SET seen_at = now() WHERE token_sha256 = %s",
                    (_digest(token),),
                )
        return Staff(principal, csrf)

    def close(self, token: str) -> None:
        with self.pool.connection() as conn:
            self._ensure_schema(conn)
            conn.execute(
                "DELETE FROM oms_console_sessions WHERE token_sha256 = %s", (_digest(token),)
            )
