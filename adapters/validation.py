"""Types for values from outside (inbound messages, HTTP bodies) that we must be able to store.

One definition each, shared by the wire contract (``adapters/contracts.py``) and the API's
request bodies (``adapters/driving/api/models.py``), so a value is refused at the edge, alone and
with a reason, instead of failing the transaction of everything committed with it or
being stored and then stopping the projections that copy it into rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, Field

NO_NUL = r"^[^\x00]*$"
"""PostgreSQL text and jsonb cannot hold NUL (``\\u0000``): a lookup row or a projection row
holding such a string fails its whole transaction."""

SafeStr = Annotated[str, Field(pattern=NO_NUL)]
"""Any text PostgreSQL can store; add lengths with ``Field(...)`` where it is used."""

Text = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]
"""A required identifier or short text of the wire contract."""

LineNo = Annotated[int, Field(ge=1, le=1_000_000)]
"""An order line number: stored in ``int`` (32-bit) lookup columns; orders hold at most
500 lines, a million leaves any numbering scheme room."""

Quantity = Annotated[int, Field(ge=1, le=10_000)]
"""Units of one line or item: an order line holds at most 10,000, so no fulfilment, receipt
or return of more can be valid."""

StockQuantity = Annotated[int, Field(ge=0, le=1_000_000_000)]
"""Units on hand at a location (a count)."""

StockDelta = Annotated[int, Field(ge=-1_000_000_000, le=1_000_000_000)]
"""A stock adjustment. Read models sum these in ``bigint`` (at most 9.2 * 10^18): bounded
at 10^9 each, billions of them cannot overflow the sum."""

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""No business moment of this system (an order placed or delivered, a message sent) is
older. Further back, year 0001 with an offset is a valid RFC 3339 string but overflows when
converted to UTC, which the projections do."""

FUTURE_SLACK = timedelta(days=1)
"""How far ahead of our clock a moment may be: producers' clocks and time zones disagree
a little, never by more than a day. A year-9999 delivery would open a return window that
overflows the date arithmetic of the return policy."""


def _plausible(value: datetime) -> datetime:
    # Compared, never converted: converting year 0001 +05:00 to UTC is what overflows.
    # A naive moment is read as UTC, as the domain reads it.
    earliest, latest = EARLIEST, datetime.now(UTC) + FUTURE_SLACK
    if value.tzinfo is None:
        earliest, latest = earliest.replace(tzinfo=None), latest.replace(tzinfo=None)
    if not earliest <= value <= latest:
        raise ValueError(
            f"{value.isoformat()} is not a plausible moment "
            f"(expected between {EARLIEST.date()} and a day from now)"
        )
    return value


Moment = Annotated[
    datetime,
    AfterValidator(_plausible),
    Field(description="RFC 3339; between 2000-01-01 and one day from now"),
]
"""A business moment: when something happened (or was sent)."""
