"""The README's main job, in a short mode: it must end with its rebuild check passing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_plays_a_day_and_its_rebuild_equals_the_live_read_models(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "OMS_DATA_DIR": str(tmp_path)}
    for name in ("OMS_DATABASE_URL", "OMS_KAFKA_BOOTSTRAP"):
        env.pop(name, None)  # the embedded default, exactly as a fresh machine runs it
    result = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "demo", "--orders", "40", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "orders placed: 40" in out
    assert "unbalanced refunds: 0" in out
    assert "rebuild check: a replay of the event store equals the live read models" in out
    assert (tmp_path / "returns-by-reason-and-supplier.html").read_text().count("<rect") > 0
