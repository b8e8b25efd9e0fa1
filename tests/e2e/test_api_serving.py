"""``rma api`` as deployed: several worker processes behind one port, one ``/metrics``."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from adapters.driving.api.auth import hash_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_rma_api_serves_with_the_configured_workers_and_one_metrics_view_of_them_all(
    database_url: str, tmp_path: Path
) -> None:
    salt = secrets.token_hex(8)
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            {
                "salt": salt,
                "keys": [{"principal": "prometheus", "role": "ops", "sha256": hash_key(salt, "k")}],
            }
        )
    )
    port = free_port()
    env = {
        **os.environ,
        "OMS_DATABASE_URL": database_url,
        "OMS_API_KEYS_FILE": str(keys),
        "OMS_API_PORT": str(port),
        "OMS_API_WORKERS": "2",
        "OMS_DATA_DIR": str(tmp_path / "data"),
        "OMS_LOG_LEVEL": "WARNING",
    }
    env.pop("OMS_KAFKA_BOOTSTRAP", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.driving.cli", "api"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "rma api exited"
            try:
                if httpx.get(url + "/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "rma api was not ready within 120 s"
            time.sleep(0.2)
        workers = [
            pid
            for pid in children(process.pid)
            if "app_from_env" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
            or "multiprocessing" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        ]
        assert len(workers) >= 2, workers

        # Each on a new connection, so the kernel spreads them over the workers; the
        # scrape, answered by one of them, still counts them all.
        for _ in range(30):
            assert httpx.get(url + "/v1/lag", timeout=10).status_code == 401
        assert httpx.get(url + "/metrics", timeout=10).status_code == 401
        text = httpx.get(url + "/metrics", headers={"Authorization": "Bearer k"}, timeout=10).text
        counted = re.search(
            r'oms_api_requests_total\{method="GET",route="/v1/lag",status="401"\} (\S+)', text
        )
        assert counted is not None, text[:2000]
        assert float(counted.group(1)) == 30
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
