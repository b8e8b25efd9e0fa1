"""What the pipeline benchmarks share: the stack they run on, CPU accounting, the report header.

The stack is the embedded PostgreSQL and Tansu broker, started in a fresh temporary
directory, unless ``OMS_DATABASE_URL`` / ``OMS_KAFKA_BOOTSTRAP`` name servers to use
(scratch ones: the benchmarks add tens of thousands of events and messages).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psycopg

from adapters.driven.embedded.postgres import EmbeddedPostgres
from adapters.driven.embedded.tansu import EmbeddedKafka

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: str = ",.0f") -> str:
    """``min-max`` of the repetitions, so a reader sees how noisy a median is."""
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


# ---------------------------------------------------------------------------- the stack
@dataclass
class Stack:
    url: str
    bootstrap: str | None
    scratch: Path | None = None
    postgres: EmbeddedPostgres | None = None
    kafka: EmbeddedKafka | None = None

    def restart_broker(self) -> bool:
        """An empty broker (memory storage), so every repetition starts alike; False if
        the broker is not ours to restart."""
        if self.kafka is None:
            return False
        self.kafka.restart()
        return True

    def processes(self) -> dict[str, list[int]]:
        """The server processes whose CPU time is worth watching, by role."""
        found: dict[str, list[int]] = {}
        if self.postgres is not None:
            postmaster = postmaster_pid(self.postgres.pgdata)
            if postmaster is not None:
                found["postgres"] = [postmaster]
        if self.kafka is not None and self.kafka.pid is not None:
            found["tansu"] = [self.kafka.pid]
        return found


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def stack(*, kafka: bool) -> Iterator[Stack]:
    url = os.environ.get("OMS_DATABASE_URL")
    bootstrap = os.environ.get("OMS_KAFKA_BOOTSTRAP") if kafka else None
    scratch = Path(tempfile.mkdtemp(prefix="oms-bench-"))
    running = Stack(url or "", bootstrap, scratch)
    try:
        if url is None:
            progress(f"starting embedded PostgreSQL in {scratch}")
            running.postgres = EmbeddedPostgres(scratch / "postgres").start()
            running.url = running.postgres.url
        if kafka and bootstrap is None:
            progress(f"starting embedded Tansu in {scratch}")
            running.kafka = EmbeddedKafka(scratch / "tansu").start()
            running.bootstrap = running.kafka.bootstrap
        yield running
    finally:
        if running.kafka is not None:
            progress("stopping embedded Tansu")
            running.kafka.stop()
        if running.postgres is not None:
            progress("stopping embedded PostgreSQL")
            running.postgres.stop()
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------- CPU time
def _proc_times(pid: int) -> tuple[int, int, int] | None:
    """(ppid, own CPU ticks, reaped children's CPU ticks) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces; fields follow the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    own = int(fields[11]) + int(fields[12])
    children = int(fields[13]) + int(fields[14])
    return ppid, own, children


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process, its live children and the children it has reaped."""
    total = 0
    root_times = _proc_times(root)
    if root_times is None:
        return 0.0
    total += root_times[1] + root_times[2]
    with suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == root:
                continue
            times = _proc_times(int(entry))
            if times is not None and times[0] == root:
                total += times[1]
    return total / CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU seconds each role used between ``start()`` and ``stop()``, next to wall time."""

    roles: Mapping[str, Sequence[int]]
    _start: dict[str, float] = field(default_factory=dict)
    _t0: float = 0.0

    def _read(self) -> dict[str, float]:
        now = {"bench process": time.process_time()}
        for role, pids in self.roles.items():
            now[role] = sum(tree_cpu_seconds(pid) for pid in pids)
        return now

    def start(self) -> None:
        self._start = self._read()
        self._t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        """Cores used on average by each role (CPU seconds / wall seconds)."""
        wall = time.perf_counter() - self._t0
        end = self._read()
        return {role: (end[role] - self._start[role]) / wall for role in end}


def cores(usage: Sequence[Mapping[str, float]]) -> str:
    """Median cores per role over the repetitions, as one cell."""
    if not usage:
        return ""
    roles = list(usage[0])
    return ", ".join(f"{role} {median([u[role] for u in usage]):.2f}" for role in roles)


# ---------------------------------------------------------------------------- report
def code_snapshot(folders: Sequence[str]) -> str:
    """A digest of the code under test: the tree has no commit to name while it changes."""
    digest = hashlib.sha256()
    for path in sorted(p for folder in folders for p in ROOT.glob(f"{folder}/*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def crc32c_status() -> str:
    """Whether kafka-python found the C ``crc32c`` (without it, it computes CRCs in Python)."""
    try:
        import crc32c  # noqa: F401
    except ImportError:
        return "`import crc32c` fails: kafka-python computes CRC32C in pure Python"
    from kafka.record import util

    used = getattr(util, "crc32c_c", None) is not None
    return f"`import crc32c` works ({metadata.version('crc32c')}); kafka-python " + (
        "uses it" if used else "does NOT use it"
    )


def versions(names: Sequence[str]) -> str:
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (absent)")
    return ", ".join(found)


def header(
    *,
    mode: str,
    repeats: int,
    started: float,
    load_before: float,
    running: Stack,
    packages: Sequence[str],
    folders: Sequence[str],
    extra: Sequence[str] = (),
) -> list[str]:
    with psycopg.connect(running.url, autocommit=True) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            return str(row[0]) if row else "?"

        server = show("server_version")
        durability = f"fsync={show('fsync')}, synchronous_commit={show('synchronous_commit')}"
    cpu = "?"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    where = "embedded, fresh data directory" if running.postgres else "OMS_DATABASE_URL"
    broker = ""
    if running.bootstrap is not None:
        broker = "; Kafka: " + (
            "embedded Tansu (memory storage)" if running.kafka else "OMS_KAFKA_BOOTSTRAP"
        )
    return [
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; mode {mode}, {repeats} repetitions, "
        f"medians; runtime {time.perf_counter() - started:.0f} s",
        f"- machine: nproc {len(os.sched_getaffinity(0))} ({os.cpu_count()} online), {cpu}, "
        f"{platform.system()} {platform.machine()}; 1-minute load average {load_before:.2f} "
        f"before, {os.getloadavg()[0]:.2f} after (other work shares this machine)",
        f"- Python {platform.python_version()}; {versions(packages)}",
        f"- PostgreSQL {server} ({where}), {durability}{broker}",
        f"- code under test: sha256 of {' + '.join(f'{f}/*.py' for f in folders)} = "
        f"{code_snapshot(folders)}",
        *extra,
    ]


def write_result(name: str, text: str, output: Path | None = None) -> Path:
    path = output or RESULTS_DIR / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
