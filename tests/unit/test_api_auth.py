"""API keys and problem mapping, without a server or a database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.driving.api.auth import KeyRing, Principal, Role, hash_key, main
from adapters.driving.api.problems import Problem, status_of
from domain.errors import (
    ConcurrencyConflict,
    InvalidTransition,
    NotFound,
    PolicyViolation,
    QuantityExceeded,
)


def test_a_key_file_holds_only_salted_hashes_and_maps_them_to_principals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    main(["new", str(path), "--principal", "tablet-S1", "--role", "store", "--store-id", "S1"])
    key = capsys.readouterr().out.strip()
    stored = path.read_text()
    assert key not in stored and hash_key(json.loads(stored)["salt"], key) in stored
    ring = KeyRing.from_file(path)
    assert ring.principal_for(key) == Principal("tablet-S1", Role.STORE, "S1")
    assert ring.principal_for(key + "x") is None


def test_the_same_key_hashes_differently_in_another_deployment() -> None:
    assert hash_key("salt-a", "k") != hash_key("salt-b", "k")


def test_a_store_key_without_its_store_is_refused() -> None:
    document = {"salt": "s", "keys": [{"principal": "t", "role": "store", "sha256": "00"}]}
    with pytest.raises(ValueError, match="store_id"):
        KeyRing.from_json(document)


def test_a_store_key_is_bound_to_its_store() -> None:
    tablet = Principal("t", Role.STORE, "S1")
    tablet.check_store("S1")
    with pytest.raises(Problem) as refused:
        tablet.check_store("S2")
    assert refused.value.status == 403
    Principal("agent", Role.CUSTOMER_SERVICE).check_store("S2")  # other roles see all stores


def test_domain_errors_map_to_http_statuses() -> None:
    assert status_of(NotFound("x")) == 404
    assert status_of(InvalidTransition("x")) == 409
    assert status_of(ConcurrencyConflict("x")) == 409
    assert status_of(QuantityExceeded("x")) == 422
    assert status_of(PolicyViolation("outside_return_window", "x")) == 422
