"""API keys: hashed at rest, each mapped to a principal with one role (and a store).

The key file (JSON, path in ``OMS_API_KEYS_FILE``)::

    {"salt": "<random, per deployment>",
     "keys": [{"principal": "tablet-S1", "role": "store", "store_id": "S1",
               "sha256": "<hex of sha256(salt + key)>"}]}

A warehouse key may carry a ``warehouse_id`` (optional): the RMA search and queues then
show it that warehouse's RMAs only.

Keys are random 32-byte tokens, so a salted SHA-256 is enough (nothing to brute-force);
the salt keeps one deployment's hashes useless for another. ``python -m
adapters.driving.api.auth new --role store --store-id S1 --principal tablet-S1 FILE`` adds one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from fastapi import Request

from adapters.driving.api.problems import Problem

KEYS_FILE_ENV = "OMS_API_KEYS_FILE"


class Role(StrEnum):
    CUSTOMER_SERVICE = "customer_service"
    PORTAL = "portal"
    STORE = "store"
    WAREHOUSE = "warehouse"
    ANALYTICS = "analytics"
    OPS = "ops"  # monitoring: scrapes /metrics, nothing else
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    store_id: str | None = None
    warehouse_id: str | None = None
    """A warehouse key with a ``warehouse_id`` sees that warehouse's RMAs only in the
    search and queues; without one it sees every warehouse's (as before)."""

    def check_store(self, store_id: str | None) -> None:
        """A store key sees its own store's data only; other roles pass."""
        if self.role is Role.STORE and store_id != self.store_id:
            raise Problem(403, "forbidden", "this key belongs to another store")


def hash_key(salt: str, key: str) -> str:
    return hashlib.sha256((salt + key).encode()).hexdigest()


class KeyRing:
    """Principals by hashed key; plain keys are never held."""

    def __init__(self, salt: str, principals: dict[str, Principal]) -> None:
        self.salt = salt
        self._by_hash = principals

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> KeyRing:
        salt = str(document["salt"])
        principals = {}
        for entry in document.get("keys", []):
            role = Role(entry["role"])
            store_id = entry.get("store_id")
            if role is Role.STORE and not store_id:
                raise ValueError(f"store key {entry['principal']!r} needs a store_id")
            principals[str(entry["sha256"])] = Principal(
                str(entry["principal"]), role, store_id, entry.get("warehouse_id")
            )
        return cls(salt, principals)

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        return cls.from_json(json.loads(path.read_text()))

    @classmethod
    def from_env(cls) -> KeyRing:
        path = os.environ.get(KEYS_FILE_ENV)
        if not path:
            raise ValueError(f"{KEYS_FILE_ENV} is not set: the API needs a key file")
        return cls.from_file(Path(path))

    @classmethod
    def with_keys(cls, keys: dict[str, Principal], salt: str | None = None) -> KeyRing:
        """From plain keys (tests, the dev stack): hashed here, then forgotten."""
        salt = salt or secrets.token_hex(16)
        return cls(salt, {hash_key(salt, key): p for key, p in keys.items()})

    def principal_for(self, key: str) -> Principal | None:
        return self._by_hash.get(hash_key(self.salt, key))

    def digest(self, key: str) -> str:
        """The key as the key file holds it (salted SHA-256): what a console session keeps."""
        return hash_key(self.salt, key)

    def principal_for_digest(self, digest: str) -> Principal | None:
        return self._by_hash.get(digest)


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


class Allow:
    """Dependency admitting the given roles (admin always); ``roles`` is read by the tests
    that check every route answers 401 and 403.

    Async although it never awaits: a sync dependency runs in the thread pool, so every
    request would queue for a thread twice (key check, then handler) and, under a burst,
    wait behind every other request's key check before its handler could start.
    """

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset({*roles, Role.ADMIN})

    async def __call__(self, request: Request) -> Principal:
        return self.check(request)

    def check(self, request: Request) -> Principal:
        key = presented_key(request)
        keys: KeyRing = request.app.state.api.keys
        principal = keys.principal_for(key) if key else None
        if principal is None:
            raise Problem(
                401,
                "unauthenticated",
                "a valid API key is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if principal.role not in self.roles:
            raise Problem(403, "forbidden", f"role {principal.role} may not do this")
        request.state.principal = principal
        return principal


class MetricsReader(Allow):
    """``/metrics``: the ``ops`` role (and admin), unless the deployment made it public
    (``OMS_METRICS_PUBLIC``). Its lag queries and route counts are for operators only."""

    def __init__(self) -> None:
        super().__init__(Role.OPS)

    async def __call__(self, request: Request) -> Principal:
        if request.app.state.api.settings.metrics_public:
            return Principal("anonymous", Role.OPS)
        return self.check(request)


def _new_key(args: argparse.Namespace) -> None:
    path = Path(args.file)
    document: dict[str, Any] = (
        json.loads(path.read_text())
        if path.exists()
        else {"salt": secrets.token_hex(16), "keys": []}
    )
    key = secrets.token_urlsafe(32)
    entry = {
        "principal": args.principal,
        "role": Role(args.role).value,
        "sha256": hash_key(document["salt"], key),
    }
    if args.store_id:
        entry["store_id"] = args.store_id
    if args.warehouse_id:
        entry["warehouse_id"] = args.warehouse_id
    document["keys"].append(entry)
    KeyRing.from_json(document)  # refuse to write a file the API would not load
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(key)  # shown once: only its hash is kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m adapters.driving.api.auth")
    sub = parser.add_subparsers(required=True)
    new = sub.add_parser("new", help="add a key to a key file and print it")
    new.add_argument("file")
    new.add_argument("--principal", required=True)
    new.add_argument("--role", required=True, choices=[r.value for r in Role])
    new.add_argument("--store-id")
    new.add_argument("--warehouse-id")
    new.set_defaults(run=_new_key)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
