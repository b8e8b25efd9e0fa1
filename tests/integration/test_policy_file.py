"""The policy file adapter on a real file: reloads on change, even two same-size saves
within one timestamp tick; a missing or broken file keeps the policy in force, logged once."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from adapters.driven.policy_file import PolicyFile


def test_a_save_of_the_same_size_with_the_same_timestamp_is_still_seen(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('version = "a1"\n')
    source = PolicyFile(path)
    stamp = path.stat().st_mtime_ns
    path.write_text('version = "b2"\n')
    os.utime(path, ns=(stamp, stamp))  # as if saved within the same clock tick
    assert source().version == "b2"


def test_a_broken_or_missing_file_keeps_the_policy_in_force_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('version = "good"\n[default]\nwindow_days = 20\n')
    source = PolicyFile(path)
    path.write_text('version = "bad"\n[default]\nwindow_days = -4\n')
    with caplog.at_level(logging.ERROR, logger="adapters.driven.policy_file"):
        assert [source().version for _ in range(3)] == ["good"] * 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"{path}: default.window_days: " in errors[0] and "good stays in force" in errors[0]
    path.unlink()
    assert source().version == "good"
    path.write_text('version = "fixed"\n')
    assert source().version == "fixed"
