"""The stop shared by both embedded servers: polite requests first, then SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from adapters.driven.embedded.process import EmbeddedServerError, stop_escalating, terminate

# A server that ignores SIGTERM, and says so once it does.
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def _started(code: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _reaped(process: subprocess.Popen[str]) -> Callable[[int, float], bool]:
    """Waits on our own child, so it is reaped (a zombie would linger)."""

    def gone(pid: int, timeout: float) -> bool:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    return gone


@pytest.mark.timeout(60)
def test_a_server_that_ignores_sigterm_is_killed_after_its_timeout() -> None:
    process = _started(STUBBORN)
    try:
        stop_escalating(
            "stubborn", process.pid, [(terminate(process.pid), 0.5)], gone=_reaped(process)
        )
        assert process.returncode == -signal.SIGKILL
    finally:
        process.kill()
        process.wait(10)


@pytest.mark.timeout(60)
def test_a_server_that_obeys_sigterm_is_never_killed() -> None:
    process = _started("import time\nprint('ready', flush=True)\ntime.sleep(120)\n")
    try:
        stop_escalating(
            "polite", process.pid, [(terminate(process.pid), 30.0)], gone=_reaped(process)
        )
        assert process.returncode == -signal.SIGTERM
    finally:
        process.kill()
        process.wait(10)


@pytest.mark.timeout(60)
def test_each_request_is_tried_in_turn_before_the_kill() -> None:
    process = _started(STUBBORN)
    asked: list[str] = []
    try:
        stop_escalating(
            "stubborn",
            process.pid,
            [(lambda: asked.append("fast"), 0.1), (lambda: asked.append("immediate"), 0.1)],
            gone=_reaped(process),
        )
        assert asked == ["fast", "immediate"]
        assert process.returncode == -signal.SIGKILL
    finally:
        process.kill()
        process.wait(10)


def test_a_process_that_survives_sigkill_is_an_error() -> None:
    # Above pid_max, so SIGKILL finds no process; "gone" stands for one that stays.
    with pytest.raises(EmbeddedServerError, match="survived SIGKILL"):
        stop_escalating("ghost", 2**22 + 12345, [], gone=lambda pid, timeout: False)
