"""``rma dev`` starts everything on the embedded default and stops it all on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_rma_dev_serves_the_api_writes_its_endpoints_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {**os.environ, "OMS_DATA_DIR": str(tmp_path), "OMS_API_PORT": str(port)}
    for name in ("OMS_DATABASE_URL", "OMS_KAFKA_BOOTSTRAP", "OMS_API_KEYS_FILE"):
        env.pop(name, None)
    log = (tmp_path / "dev.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.driving.cli", "dev"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        endpoints_file = tmp_path / "endpoints.json"
        deadline = time.monotonic() + 180
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            if endpoints_file.exists():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                        health = r.status
                        break
                except OSError:
                    pass
            time.sleep(0.5)
        assert health == 200, (tmp_path / "dev.log").read_text()[-3000:]
        endpoints = json.loads(endpoints_file.read_text())
        assert endpoints["api"].endswith(f":{port}")
        assert endpoints["postgres"].startswith("postgresql://")
        assert Path(endpoints["api_keys_file"]).exists()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
