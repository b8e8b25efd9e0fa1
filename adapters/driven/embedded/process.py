"""The server-process helper shared by the embedded PostgreSQL and Tansu.

Both servers are daemons that outlive us on purpose and are found again by a later
``start()``; both stop the same way: a polite request, then SIGKILL, then an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

_log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start or stop; the message carries its log tail."""


def free_port(preferred: int | None = None) -> int:
    """A TCP port on 127.0.0.1 that is free right now (``preferred`` if it is)."""
    if preferred:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers bind: a port whose old connections linger in TIME_WAIT (a
            # server we just stopped) is free for them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOCALHOST, preferred))
            except OSError:
                pass
            else:
                return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_exists(pid: int) -> bool:
    """Whether kill(pid, 0) finds the process, zombies included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def pid_alive(pid: int) -> bool:
    # Daemons are reparented to PID 1, which in some containers reaps late (seconds):
    # a dead server lingers as a zombie that still answers kill(0).
    return pid_exists(pid) and not is_zombie(pid)


def pid_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def log_tail(path: Path, start: int = 0, limit: int = 4000) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(start, 0))
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return text[-limit:] if text else "(empty log)"


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --------------------------------------------------------------------------- the process


class ServerProcess:
    """Start/reuse ownership and escalating stop, shared by both embedded servers.

    ``start()`` either launches a server (this object owns it) or reuses one already
    running on the same directory. Leaving a ``with`` block stops the server only if this
    object started it, so a second process sharing the directory does not pull it from
    under the first; ``stop()`` always stops it.
    """

    _owned: bool = False
    reused: bool = False
    """True when ``start()`` found the server already running."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

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


def stop_escalating(
    name: str,
    pid: int,
    requests: Sequence[tuple[Callable[[], None], float]],
    *,
    gone: Callable[[int, float], bool] = wait_pid_gone,
    kill_timeout: float = 5.0,
) -> None:
    """Ask ``pid`` to exit with each request in turn, then SIGKILL it.

    Each request is followed by a wait of its timeout for the process to be gone (``gone``
    waits, returning whether it went). A process that survives SIGKILL is an error.
    """
    for request, timeout in requests:
        request()
        if gone(pid, timeout):
            return
    _log.warning("killing %s pid %s", name, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not gone(pid, kill_timeout):
        raise EmbeddedServerError(f"{name} pid {pid} survived SIGKILL")


def terminate(pid: int) -> Callable[[], None]:
    """A request for ``stop_escalating``: SIGTERM to ``pid``."""

    def send() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    return send


__all__ = [
    "LOCALHOST",
    "EmbeddedServerError",
    "ServerProcess",
    "file_size",
    "free_port",
    "is_zombie",
    "log_tail",
    "pid_alive",
    "pid_cmdline",
    "pid_exists",
    "port_accepts",
    "stop_escalating",
    "terminate",
    "wait_pid_gone",
]
