"""What the store tablet and the warehouse pages share: a command run once per form, as the
signed-in person, and a refusal shown as a page rather than a JSON problem.

Each form carries a one-time ``form_id`` (a random hex string put in a hidden field when
the page is drawn). It is the command's idempotency key, through the same command log the
API's ``Idempotency-Key`` uses: a second submit of the same form (a double tap, a resend
after a dropped answer) returns the first outcome and records nothing again. The key is
scoped by the person's key name and the command, and the posted fields are its
fingerprint, so the same ``form_id`` with other fields is refused, never answered with
another request's result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from fastapi import Request
from fastapi.responses import HTMLResponse

from adapters.driving.api.context import api_of
from adapters.driving.api.problems import Problem, status_of
from adapters.driving.console.once import console_ctx, earlier_outcome, fingerprint_of
from adapters.driving.console.sessions import Staff
from adapters.driving.console.web import render
from domain.application import Outcome
from domain.commands import Command
from domain.errors import DomainError
from domain.values import Condition, Disposition, ReasonCode

FORM_ID = re.compile(r"[0-9a-f]{32}")

REASONS = [(r.value, r.value.replace("_", " ").capitalize()) for r in ReasonCode]
CONDITIONS = [(c.value, c.value.replace("_", " ").capitalize()) for c in Condition]
DISPOSITIONS = [(d.value, d.value.replace("_", " ").capitalize()) for d in Disposition]


class FormExpired(Exception):
    """A post without a well-formed one-time form id: not sent from a page we drew."""


def run_form_command(
    request: Request, staff: Staff, name: str, command: Command, fields: Mapping[str, str]
) -> Outcome:
    """Run ``command`` as the signed-in person, once per ``form_id`` of ``fields``."""
    api = api_of(request)
    key, fingerprint = _scoped(staff, name, fields)
    earlier = earlier_outcome(api, key, fingerprint)
    if earlier is not None:
        return earlier
    with api.metrics.timed(name):
        return api.service.run(console_ctx(staff, key, fingerprint), command)


def _scoped(staff: Staff, name: str, fields: Mapping[str, str]) -> tuple[str, str]:
    form_id = fields.get("form_id", "")
    if not FORM_ID.fullmatch(form_id):
        raise FormExpired()
    fingerprint = fingerprint_of(name, fields)
    return f"console:{staff.principal.name}:{name}:{form_id}", fingerprint


def refusal_of(
    request: Request, staff: Staff, name: str, command: Command, fields: Mapping[str, str]
) -> str | None:
    """Run the form's command (once, as the person); what to tell them if it was refused,
    None when it ran."""
    try:
        run_form_command(request, staff, name, command, fields)
    except FormExpired:
        return "this form was not drawn by the console: reload the page and try again"
    except DomainError as refused:
        return refused.message
    return None


def already_done(
    request: Request, staff: Staff, name: str, fields: Mapping[str, str]
) -> Outcome | None:
    """The outcome of this very form if it was sent before: a page checks it first, since
    the form no longer fits the state its first submit changed (nothing left to receive)."""
    try:
        key, fingerprint = _scoped(staff, name, fields)
    except FormExpired:
        return None
    return earlier_outcome(api_of(request), key, fingerprint)


def failure_page(request: Request, staff: Staff, failure: Exception) -> HTMLResponse:
    """A refusal met while drawing a page (not found, another store's, ...) as a page."""
    if isinstance(failure, Problem):
        status, message = failure.status, failure.detail
    elif isinstance(failure, DomainError):
        status, message = status_of(failure), failure.message
    else:
        raise failure
    titles = {403: "Not yours to see", 404: "Not found"}
    return render(
        request,
        staff,
        "error.html",
        status_code=status,
        title=titles.get(status, "Refused"),
        message=message,
    )


def quantity_of(fields: Mapping[str, str], name: str, most: int, errors: dict[str, str]) -> int:
    """A whole number 0..``most`` from the form; a wrong one is noted beside its field."""
    raw = fields.get(name, "") or "0"
    if not raw.isdigit():
        errors[name] = "enter a whole number"
        return 0
    value = int(raw)
    if value > most:
        errors[name] = f"at most {most}"
        return 0
    return value


def choice_of(
    fields: Mapping[str, str],
    name: str,
    options: list[tuple[str, str]],
    errors: dict[str, str],
    what: str,
) -> str:
    value = fields.get(name, "")
    if value not in {v for v, _ in options}:
        errors[name] = f"choose the {what}"
    return value
