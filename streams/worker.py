"""Run a faust app as a worker: in this process (:func:`run_worker`) or a child process.

``python -m streams.worker --app package.module:factory [--ready-file PATH]`` runs the
app that ``factory()`` returns (or ``factory`` itself, if it is an app) until SIGINT or
SIGTERM, or until the app fails (:class:`WorkerFailed`: exit status 3, the reason in the
health file); no faust CLI involved. :class:`WorkerProcess` drives that command for tests and
supervisors: a child process can be SIGKILLed like a crashed production worker, which a
thread cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import faust

from streams.app import add_failure_hook

FAILED_EXIT_STATUS = 3
"""Exit status of a worker that gave up (see the health file for why)."""


class WorkerError(RuntimeError):
    """A worker process exited or hung; the message carries its log tail."""


class WorkerFailed(RuntimeError):
    """The app could not go on without skipping records; the worker stopped itself."""


def run_worker(
    app: faust.App,
    *,
    loglevel: str = "INFO",
    on_ready: Callable[[Sequence[str]], None] | None = None,
    health_file: Path | None = None,
) -> None:
    """Run ``app`` in this process until SIGINT or SIGTERM; return after a clean stop.

    Call it from the main thread (signal handlers can be installed only there).

    ``on_ready(assignment)`` is called after every rebalance, once the worker has joined
    its group and resumed its streams, with the ``topic:partition`` names it now owns.
    ``health_file`` (JSON) says ``{"status": "ok"}`` once ready and ``{"status": "failed",
    "reason": ...}`` when the app gave up. Raises :class:`WorkerFailed` when the app gave
    up (after stopping cleanly: what was acked is committed, the failed batch is not), and
    the app's crash reason if it crashed.
    """
    _freeze_heap_once_ready(app)
    failure: list[str] = []

    def failed(reason: str) -> None:
        failure.append(reason)
        if health_file is not None:
            _write_json(health_file, {"status": "failed", "reason": reason, "at": time.time()})
        # The very stop SIGTERM gives (faust's handler): agents, final commit, flush.
        os.kill(os.getpid(), signal.SIGTERM)

    add_failure_hook(app, failed)
    if health_file is not None:
        health = health_file

        async def _healthy(sender: Any, /, *args: Any, **kwargs: Any) -> None:
            if not failure:
                _write_json(health, {"status": "ok", "at": time.time()})

        app.on_rebalance_complete.connect(_healthy)
    if on_ready is not None:
        callback = on_ready

        async def _rebalanced(sender: Any, /, *args: Any, **kwargs: Any) -> None:
            tps = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
            callback(tps)

        app.on_rebalance_complete.connect(_rebalanced)
    # A loop of our own: faust would otherwise rely on asyncio.get_event_loop()
    # creating one implicitly, which Python deprecates.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # The faust Worker installs the SIGINT/SIGTERM handlers that stop the app cleanly
    # (agents, then the consumer's final commit, then the producer's flush).
    worker = faust.Worker(app, loop=loop, loglevel=loglevel, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()  # always ends in SystemExit
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            raise
    if failure:
        raise WorkerFailed(failure[0])


def _freeze_heap_once_ready(app: faust.App) -> None:
    """After the first rebalance, take what startup allocated out of the collector's sight.

    Measured at 250 events/s on the loaded 2-core machine: a full collection every 3-7 s
    per worker, 100-440 ms each while holding the GIL, so the consumer and the batch's
    database round trips all stood still (4.2 s of 35 in the integrations worker), and
    p95/p99 grew by as much. Frozen (about 110,000 objects) and with young collections
    50x rarer, the collector took 0.8 s of a comparable run, its longest pause 106 ms.
    Cyclic garbage left by startup is collected first, so nothing of it stays frozen.
    """
    frozen = False

    async def _freeze(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        nonlocal frozen
        if not frozen:
            frozen = True
            gc.collect()
            gc.freeze()
            # Most of what a batch allocates dies by reference count: at the default 700,
            # about 1,100 young collections took 0.9 s of a 35 s run; at 20,000, 20 took 0.6 s.
            gc.set_threshold(20_000, 10, 10)

    app.on_rebalance_complete.connect(_freeze)


def _load_app(spec: str) -> faust.App:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"--app must be package.module:factory, got {spec!r}")
    target = getattr(importlib.import_module(module_name), attr)
    app = target if isinstance(target, faust.App) else target()
    if not isinstance(app, faust.App):
        raise SystemExit(f"{spec} returned {type(app).__name__}, not a faust.App")
    return app


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **document}))
    tmp.replace(path)  # atomic: a reader never sees half a file


def _write_ready_file(path: Path) -> Callable[[Sequence[str]], None]:
    def write(assignment: Sequence[str]) -> None:
        _write_json(path, {"assignment": list(assignment)})

    return write


def health_file_for(ready_file: Path) -> Path:
    """The health file next to a ready file: ``worker.ready`` -> ``worker.health``."""
    return ready_file.with_name(ready_file.stem + ".health")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.worker")
    parser.add_argument("--app", required=True, help="package.module:factory of the app")
    parser.add_argument("--ready-file", type=Path, help="written after every rebalance")
    parser.add_argument(
        "--health-file",
        type=Path,
        help="status ok or failed with the reason (default: next to the ready file)",
    )
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    app = _load_app(args.app)
    on_ready = _write_ready_file(args.ready_file) if args.ready_file else None
    health = args.health_file or (health_file_for(args.ready_file) if args.ready_file else None)
    try:
        run_worker(app, loglevel=args.loglevel, on_ready=on_ready, health_file=health)
    except WorkerFailed as failed:
        print(f"worker failed: {failed}", file=sys.stderr)
        raise SystemExit(FAILED_EXIT_STATUS) from None


class WorkerProcess:
    """``python -m streams.worker`` as a child process, with its output in ``log_path``."""

    def __init__(
        self,
        app_spec: str,
        *,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        loglevel: str = "INFO",
    ) -> None:
        self.app_spec = app_spec
        self.workdir = workdir
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.loglevel = loglevel
        self.ready_file = workdir / "worker.ready"
        self.health_file = health_file_for(self.ready_file)
        self.log_path = workdir / "worker.log"
        self.started_at: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        if self.is_running():
            raise WorkerError(f"worker pid {self.pid} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        self.health_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "streams.worker", "--app", self.app_spec]
        argv += ["--ready-file", str(self.ready_file), "--loglevel", self.loglevel]
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                # Its own session: a Ctrl-C meant for the parent must not hit it unasked.
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float) -> list[str]:
        """Wait until the worker has joined its group; return its assignment."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError):
                assignment: list[str] = json.loads(self.ready_file.read_text())["assignment"]
                return assignment
            if not self.is_running():
                raise WorkerError(f"worker exited before it was ready:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise WorkerError(f"worker not ready after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (a clean stop: final commit); SIGKILL after ``timeout``. Exit code."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL, like a crash: nothing is committed or flushed. Exit code."""
        return self._signal(signal.SIGKILL, 10.0)

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return "(no log)"

    def _signal(self, signum: signal.Signals, timeout: float) -> int:
        process = self._process
        if process is None:
            raise WorkerError("worker was never started")
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)
            try:
                return process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10.0)
                raise WorkerError(
                    f"worker ignored {signum.name} for {timeout:.0f}s; killed:\n{self.log_tail()}"
                ) from None
        return process.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.is_running():
            self.terminate()


if __name__ == "__main__":
    main()
