"""Settings of the HTTP API, apart from the process settings in ``adapters/settings.py``."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from adapters.settings import DEFAULT_WAREHOUSE_ADDRESSES


class ApiSettings(BaseModel):
    """Immutable API settings; defaults suit a development deployment."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True, extra="forbid")

    require_if_match: bool = False
    """RMA commands without an ``If-Match`` header are refused with 428 when true; when
    false the header is checked if present (412 on a stale version)."""

    default_page_size: int = Field(default=50, ge=1, le=1000)
    """Items per page of a list when the client gives no ``limit``."""

    max_page_size: int = Field(default=200, ge=1, le=10_000)
    """Largest ``limit`` a list accepts."""

    read_pool_size: int = Field(default=4, ge=1, le=100)
    """Connections to the read-model database (queries of the read side)."""

    threads: int | None = Field(default=None, ge=1, le=1000)
    """Threads running the blocking handlers in this process (None: anyio's default, 40).
    ``rma api`` sets it to ``OMS_API_THREADS`` and sizes both connection pools to it."""

    metrics_public: bool = False
    """``/metrics`` answers without a key when true; otherwise it needs a key of the
    ``ops`` (or ``admin``) role."""

    relay_name: str = "relay"
    """Name of the relay whose lag ``/v1/lag`` and ``/metrics`` report."""

    warehouse_addresses: Mapping[str, str] = DEFAULT_WAREHOUSE_ADDRESSES
    """Each returns warehouse's address for the return note (``OMS_WAREHOUSE_ADDRESSES``)."""

    refund_pending_hours: int = Field(default=48, ge=1, le=24 * 365)
    """``/v1/queues/refunds_pending``: a refund requested longer ago than this many hours
    and still unsettled is in the queue (a request may ask for another ``older_than_hours``)."""

    not_inspected_days: int = Field(default=3, ge=0, le=365)
    """``/v1/queues/not_inspected``: an RMA received this many days ago or more and still
    not inspected is in the queue (a request may ask for another ``older_than_days``)."""

    console_secure_cookie: bool = True
    """The console's session cookie is ``Secure`` (sent over HTTPS only; browsers also send it
    to ``localhost``). Off only for a console served over plain HTTP on another host, which
    a deployment should not do."""

    console_idle_hours: float = Field(default=8, gt=0, le=24 * 30)
    """A console session not used for this many hours is over: sign in again."""
