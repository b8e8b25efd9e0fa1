"""Process configuration, read from ``OMS_*`` environment variables.

Every setting is a field of :class:`Settings`; the variable name is ``OMS_`` plus the
upper-cased field name, and the field's docstring is its documentation (the README table
comes from :func:`env_documentation`, so the two cannot drift apart).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "OMS_"

# Where the default warehouse (WH-1) of a development deployment takes returns.
DEFAULT_WAREHOUSE_ADDRESSES: Mapping[str, str] = {
    "WH-1": "Returns Centre WH-1, 1 Dock Road, 10115 Berlin, Germany"
}

LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]

_log = logging.getLogger(__name__)


class Settings(BaseModel):
    """Immutable runtime settings; build them with :meth:`Settings.from_env`."""

    # use_attribute_docstrings turns the docstrings below into field descriptions, which
    # env_documentation() publishes.
    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True, extra="forbid")

    database_url: str | None = None
    """PostgreSQL URL (postgresql://user@host:port/db) of the event store and read models;
    unset: start the embedded PostgreSQL under the data directory."""

    kafka_bootstrap: str | None = None
    """Kafka bootstrap servers, comma-separated host:port; unset: start the embedded Tansu
    broker (memory storage: a restart loses every topic and offset)."""

    data_dir: Path = Field(default=Path(".oms-data"), validate_default=True)
    """Directory for local state: the embedded PostgreSQL data and the broker log live
    under it (relative paths are taken from the current directory)."""

    topic_partitions: int = Field(default=4, ge=1, le=10_000)
    """Partition count given to every topic this service provisions."""

    consumer_session_timeout_ms: int = Field(default=6000, ge=1000, le=1_800_000)
    """Kafka consumer-group session timeout; a group join waits about half of it."""

    fetch_max_wait_ms: int = Field(default=20, ge=0, le=60_000)
    """Longest a consumer fetch waits at the broker for data; bounds consumer latency."""

    dlq_publish_attempts: int = Field(default=8, ge=1, le=1000)
    """Attempts to publish a batch's dead letters (backoff 0.5 s doubling, at most 30 s
    apart: about 1 min at the default) before the worker gives up: it logs CRITICAL, writes
    status failed and the reason to its health file, leaves the batch unacked and exits
    non-zero for its supervisor to restart it."""

    api_host: str = Field(default="127.0.0.1", min_length=1)
    """Interface the HTTP API listens on."""

    api_port: int = Field(default=8080, ge=0, le=65535)
    """TCP port of the HTTP API (0: any free port)."""

    api_workers: int = Field(default=0, ge=0, le=256)
    """Processes serving the HTTP API (0: one per CPU core). Handlers hold the GIL while
    they decode events, so one process uses at most one core; see README "HTTP API"."""

    api_threads: int = Field(default=8, ge=1, le=1000)
    """Threads per API process running the (blocking) handlers; its two PostgreSQL pools
    (event store, read models) get as many connections each, so no handler waits for one."""

    metrics_public: bool = False
    """Serve the API's ``/metrics`` without a key; false: only to keys of the ``ops`` (or
    ``admin``) role, which Prometheus sends as a bearer token."""

    log_level: LogLevel = "INFO"
    """Root log level: DEBUG, INFO, WARNING, ERROR or CRITICAL."""

    api_keys_file: Path | None = None
    """JSON file of the API's hashed keys and their roles (create keys with
    ``python -m adapters.driving.api.auth new FILE --principal NAME --role ROLE``)."""

    refund_resend_after_s: float = Field(default=300, gt=0, le=86_400 * 7)
    """Seconds a requested refund may wait for the payment provider's answer before the
    integrations worker sends it again (same refund id: the provider deduplicates); the
    worker looks for such refunds every quarter of this period, or every 5 s if sooner."""

    sweep_interval_s: float = Field(default=60, gt=0, le=86_400)
    """Seconds between the integrations worker's sweeps of deadlines: authorized RMAs never
    shipped expire, keep-the-item offers lapse, blind parcels nobody placed close (README
    "Expiry"). Every worker runs them;
    an advisory lock per sweep keeps the others out of a round."""

    sandbox_settlement_delay_s: float = Field(default=0.05, ge=0, le=3600)
    """Seconds the sandbox payment provider takes to settle or decline a refund."""

    park_for_s: float = Field(default=600, ge=0, le=86_400 * 7)
    """Seconds an in-store return or an inspection whose order or RMA is not known yet
    stays parked in PostgreSQL and retried before it goes to the dead-letter topic with
    the reason; 0 dead-letters it at once."""

    park_retry_s: float = Field(default=5, gt=0, le=3600)
    """Seconds between retries of a parked message (retried sooner once new orders came)."""

    policy_file: Path | None = None
    """TOML file of the return policy operators edit (see ``policy.example.toml`` and README
    "Return policy"); unset: the built-in defaults. Re-read when it changes, without a
    restart; a bad file stops the service at start and is ignored (logged) afterwards.
    Every decision records the file's ``version`` (or its content hash)."""

    warehouse_addresses: Mapping[str, str] = DEFAULT_WAREHOUSE_ADDRESSES
    """Postal address of each returns warehouse, printed on the return note as where to
    send the parcel: a JSON object of warehouse id to address, its lines separated by
    commas. A warehouse left out prints as its id."""

    console_secure_cookie: bool = True
    """The staff console's session cookie is ``Secure`` (HTTPS only; browsers make an
    exception for ``localhost``). Turn off only behind a proxy that serves plain HTTP to
    other hosts, which a deployment should not do."""

    console_idle_hours: float = Field(default=8, gt=0, le=24 * 30)
    """Hours a console session lasts without use; then the person signs in again."""

    @field_validator("warehouse_addresses", mode="before")
    @classmethod
    def _parse_addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"must be a JSON object: {error}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        if not parts.hostname and "host=" not in parts.query:
            raise ValueError("must name a host")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_kafka_bootstrap(cls, value: str | None) -> str | None:
        if value is None:
            return None
        servers = [server.strip() for server in value.split(",") if server.strip()]
        if not servers:
            raise ValueError("must list at least one host:port")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Made absolute once, here, so a later chdir cannot move the data, and the embedded
        # servers (started with other working directories) see the same path.
        return Path(os.path.abspath(value.expanduser()))

    @field_validator("policy_file")
    @classmethod
    def _absolute_policy_file(cls, value: Path | None) -> Path | None:
        # Like the data directory: every process reads the same file whatever its cwd.
        return None if value is None else Path(os.path.abspath(value.expanduser()))

    @field_validator("log_level", mode="before")
    @classmethod
    def _normalise_log_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            upper = value.strip().upper()
            return "WARNING" if upper == "WARN" else upper
        return value

    @property
    def api_processes(self) -> int:
        """``api_workers`` with 0 resolved to the CPU count."""
        return self.api_workers or os.cpu_count() or 1

    @property
    def postgres_dir(self) -> Path:
        """Data directory of the embedded PostgreSQL."""
        return self.data_dir / "postgres"

    @property
    def kafka_dir(self) -> Path:
        """Working directory (log, pid file) of the embedded Tansu broker."""
        return self.data_dir / "tansu"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``OMS_*`` variables (default: ``os.environ``).

        Empty variables count as unset. Raises ValueError naming the offending variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for name in cls.model_fields:
            raw = env.get(env_name(name))
            if raw is not None and raw.strip():
                values[name] = raw.strip()
        # A misspelt variable would otherwise silently fall back to a default.
        unknown = sorted(
            key
            for key in env
            if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() not in cls.model_fields
        )
        if unknown:
            _log.warning("ignoring unknown settings variables: %s", ", ".join(unknown))
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False):
                field = str(error["loc"][0]) if error["loc"] else "?"
                shown = values.get(field, error.get("input"))
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"{env_name(field)}={shown!r}: {message}")
            raise ValueError("invalid settings: " + "; ".join(problems)) from None


def env_name(field: str) -> str:
    """Environment variable that sets ``field``."""
    return ENV_PREFIX + field.upper()


def env_documentation() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, in declaration order."""
    rows = []
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=False)
        shown = "(unset)" if default is None else str(default)
        if isinstance(default, Mapping):
            shown = json.dumps(default)  # as the variable is written
        description = " ".join((info.description or "").split())
        rows.append((env_name(name), shown, description))
    return rows
