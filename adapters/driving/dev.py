"""``rma dev``'s pieces that are not process wiring: dev keys and endpoints."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from adapters.driving.api.auth import Role, hash_key


def write_dev_keys(path: Path) -> dict[str, str]:
    """A fresh key per role for a development stack; returns the plain keys (shown once)."""
    salt = secrets.token_hex(16)
    plain: dict[str, str] = {}
    entries = []
    for role in Role:
        key = f"dev-{role.value}-{secrets.token_urlsafe(12)}"
        principal = f"dev-{role.value}"
        entry: dict[str, Any] = {
            "principal": principal,
            "role": role.value,
            "sha256": hash_key(salt, key),
        }
        if role is Role.STORE:
            entry["store_id"] = "STORE-7"
        entries.append(entry)
        plain[principal] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"salt": salt, "keys": entries}, indent=2))
    path.chmod(0o600)
    return plain


def write_endpoints(path: Path, endpoints: dict[str, Any]) -> None:
    path.write_text(json.dumps(endpoints, indent=2))
