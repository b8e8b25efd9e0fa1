"""The policy as operators' data: a TOML text read into a :class:`PolicyBook`.

Pure (no file access: the adapter reads the file and passes its text), so a candidate
policy can be checked anywhere. The layout mirrors PolicyBook::

    version = "2026-12-a"          # optional; absent: the content's hash is the version
    [default]                      # any ReturnPolicy field
    window_days = 30
    [default.review_thresholds]    # per-currency, major units; added to the built-in ones
    USD = "1100"
    [channel.marketplace]          # overrides for an order channel
    window_days = 14
    [category.software]            # overrides for a product category (wins over channel)
    returnable = false
    [review]                       # rules holding requests for a person (domain/review.py)
    serial_returner_returns = 5    # 5 or more returns opened in the last 90 days
    serial_returner_days = 90
    hold_reasons_always = ["wrong_item"]

Amounts and rates may be written as strings ("0.10", exact) or numbers. Every error names
the file, the key and the reason, so an operator can fix the file from the message alone.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from domain.policy import PolicyBook, ReturnPolicy
from domain.review import ReviewRules
from domain.values import Channel, ReasonCode

_SECTIONS = frozenset({"version", "default", "channel", "category", "review"})


class PolicyFileError(ValueError):
    """A policy file that cannot be used; the policy in force stays as it was."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


def content_version(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _exact(value: Any) -> Any:
    # TOML floats are binary: 0.1 would become 0.1000000000000000055...; str() gives the
    # figure the operator wrote.
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    return value


def _overrides(source: str, key: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise PolicyFileError(source, key, "must be a table")
    fields = set(ReturnPolicy.model_fields) - {"version"}
    for name in table:
        if name not in fields:
            raise PolicyFileError(source, f"{key}.{name}", "unknown policy setting")
    checked = _exact(table)
    try:
        ReturnPolicy.model_validate(checked)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise PolicyFileError(source, f"{key}.{where}", error["msg"]) from None
    return dict(checked)


def _review(source: str, table: Any) -> ReviewRules:
    if not isinstance(table, dict):
        raise PolicyFileError(source, "review", "must be a table")
    for name in table:
        if name not in ReviewRules.model_fields:
            known = ", ".join(ReviewRules.model_fields)
            raise PolicyFileError(
                source, f"review.{name}", f"unknown review rule (expected one of {known})"
            )
    reasons = table.get("hold_reasons_always", [])
    if not isinstance(reasons, list):
        raise PolicyFileError(source, "review.hold_reasons_always", "must be a list of reasons")
    for reason in reasons:
        if reason not in {r.value for r in ReasonCode}:
            known = ", ".join(r.value for r in ReasonCode)
            raise PolicyFileError(
                source,
                "review.hold_reasons_always",
                f"unknown reason code {reason!r} (expected among {known})",
            )
    for name in ("serial_returner_returns", "serial_returner_days"):
        # A count written "5" or 5.5 is a mistake to point at, not to guess.
        value = table.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyFileError(source, f"review.{name}", "must be a whole number")
    try:
        return ReviewRules.model_validate(table)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise PolicyFileError(source, f"review.{where}", error["msg"]) from None


def parse_policy(text: str, source: str = "<policy>") -> PolicyBook:
    """The PolicyBook a policy file states; raises PolicyFileError on any mistake."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(source, "(syntax)", str(exc)) from None
    for name in data:
        if name not in _SECTIONS:
            raise PolicyFileError(
                source, name, f"unknown section (expected one of {', '.join(sorted(_SECTIONS))})"
            )
    version = data.get("version", content_version(text))
    if not isinstance(version, str) or not version.strip():
        raise PolicyFileError(source, "version", "must be a non-empty string")
    default = _overrides(source, "default", data.get("default", {}))
    by_channel: dict[Channel, Mapping[str, Any]] = {}
    channels = data.get("channel", {})
    if not isinstance(channels, dict):
        raise PolicyFileError(source, "channel", "must be a table of channels")
    for name, table in channels.items():
        try:
            channel = Channel(name)
        except ValueError:
            known = ", ".join(c.value for c in Channel)
            raise PolicyFileError(
                source, f"channel.{name}", f"unknown channel (expected one of {known})"
            ) from None
        by_channel[channel] = _overrides(source, f"channel.{name}", table)
    by_category: dict[str, Mapping[str, Any]] = {}
    categories = data.get("category", {})
    if not isinstance(categories, dict):
        raise PolicyFileError(source, "category", "must be a table of categories")
    for name, table in categories.items():
        by_category[name] = _overrides(source, f"category.{name}", table)
    review = _review(source, data.get("review", {}))
    builtin = ReturnPolicy()
    for name in ("review_thresholds", "keep_item_thresholds"):
        # Like a channel's, the file's per-currency tables add to the built-in ones: stating
        # the dollar threshold does not put every other currency under review.
        if name in default:
            default[name] = {**getattr(builtin, name), **default[name]}
    book = PolicyBook(
        default=ReturnPolicy.model_validate({**default, "version": version}),
        by_channel=by_channel,
        by_category=by_category,
        review=review,
    )
    # A channel's and a category's overrides are checked alone above; together with the
    # defaults they must make a valid policy too.
    for channel in by_channel:
        for category in [*by_category, "(any)"]:
            try:
                book.policy_for(category, channel)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"])
                raise PolicyFileError(
                    source, f"channel.{channel.value}.{where}", error["msg"]
                ) from None
    return book


def describe_policy(book: PolicyBook) -> dict[str, Any]:
    """The policy in force as plain JSON-ready data (for ``rma policy show`` and the API)."""
    return {
        "version": book.version,
        "default": book.default.model_dump(mode="json", exclude={"version"}),
        "channel": {
            channel.value: _plain(overrides) for channel, overrides in book.by_channel.items()
        },
        "category": {name: _plain(overrides) for name, overrides in book.by_category.items()},
        "review": book.review.model_dump(mode="json"),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(getattr(k, "value", k)): _plain(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return str(value)
    return getattr(value, "value", value)
