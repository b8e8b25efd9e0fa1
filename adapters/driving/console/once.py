"""A console form's command runs once, as the signed-in person.

Every form carries a one-time ``form_id`` drawn when the page was rendered. It becomes the
command's idempotency key in the service's command log, the very mechanism behind the API's
``Idempotency-Key``: a double tap, a resent post or a back-and-submit runs the command once
and answers the first outcome again. The key is scoped by the person and the form's place,
and the posted fields are its fingerprint, so the same ``form_id`` with other choices is
refused (``IdempotencyKeyReused``), never answered with another request's result.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from adapters.driving.api.context import Api
from adapters.driving.console.sessions import Staff
from domain.application import Ctx, Expected, Outcome, replayed
from domain.errors import DomainError
from domain.events import Cause


def new_form_id() -> str:
    return uuid.uuid4().hex


def digest(*parts: object) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def fingerprint_of(scope: object, fields: Mapping[str, str]) -> str:
    """What was posted, less the session's token and the form id itself."""
    sent = sorted((k, v) for k, v in fields.items() if k not in ("csrf", "form_id"))
    return digest(scope, sent)


def earlier_outcome(api: Api, key: str, fingerprint: str) -> Outcome | None:
    """The first outcome of this form if it ran before (a refusal is raised again)."""
    prior = api.service.lookups.command_result(key)
    if prior is None:
        return None
    outcome = replayed(prior, fingerprint)
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome


def console_ctx(staff: Staff, key: str, fingerprint: str, expected: Expected | None = None) -> Ctx:
    """The command's context: the person as actor, the console and role as source."""
    principal = staff.principal
    return Ctx(
        Cause(
            actor=principal.name,
            source=f"console/{principal.role.value}",
            correlation_id=str(uuid.uuid4()),
        ),
        idempotency_key=key,
        expected=expected,
        fingerprint=fingerprint,
    )


def money(value: Any) -> str:
    """A wire amount ({"amount": "19.90", "currency": "EUR"}) or a Money as "19.90 EUR"."""
    if not value:
        return ""
    if isinstance(value, Mapping):
        return f"{value.get('amount')} {value.get('currency')}"
    return f"{value.amount} {value.currency}"
