"""docker-compose.yml is valid and says only what the code understands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.driving.cli import subcommands
from adapters.settings import env_documentation

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_docker_compose_config_accepts_the_file() -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: ./run test installs it (Debian package)"
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_oms_variable_in_compose_is_a_setting_of_the_code() -> None:
    known = {name for name, _, _ in env_documentation()}
    used = {
        name
        for service in compose()["services"].values()
        for name in (service.get("environment") or {})
        if name.startswith("OMS_")
    }
    assert used, "our services are configured by OMS_* variables"
    assert used <= known, f"unknown settings in compose: {sorted(used - known)}"


def test_every_service_of_ours_runs_an_existing_rma_subcommand() -> None:
    ours = {name: s for name, s in compose()["services"].items() if "build" in s}
    assert ours
    for name, service in ours.items():
        command = service["command"]
        assert command[0] in subcommands(), f"{name} runs unknown subcommand {command[0]}"


def test_our_services_wait_for_healthy_servers() -> None:
    services = compose()["services"]
    for name in ("postgres", "kafka"):
        assert "healthcheck" in services[name]
    for name, service in services.items():
        if "build" in service:
            for dependency in ("postgres", "kafka"):
                assert service["depends_on"][dependency]["condition"] == "service_healthy", name
