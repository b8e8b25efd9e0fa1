"""The version a command expects (an HTTP If-Match), checked against the loaded aggregate."""

from __future__ import annotations

import pytest

from domain.application import Expected
from domain.errors import VersionMismatch
from tests.unit.builders import RETURN_ID, authorized_return, delivered_order, line


def test_a_command_expecting_the_current_version_passes() -> None:
    rma = authorized_return(delivered_order(line()))
    assert rma.version == 2
    Expected(RETURN_ID, frozenset({2})).check(rma)  # raises nothing
    Expected(RETURN_ID, frozenset({1, 2})).check(rma)  # any of several ETags


def test_a_command_expecting_an_older_version_is_refused_with_the_current_one() -> None:
    rma = authorized_return(delivered_order(line()))
    with pytest.raises(VersionMismatch) as refused:
        Expected(RETURN_ID, frozenset({1})).check(rma)
    assert refused.value.code == "version_mismatch"
    assert refused.value.current_version == 2


def test_no_version_matches_an_aggregate_that_does_not_exist() -> None:
    with pytest.raises(VersionMismatch) as refused:
        Expected(RETURN_ID, frozenset({1})).check(None)
    assert refused.value.current_version == 0


def test_an_expectation_naming_no_version_matches_nothing() -> None:
    rma = authorized_return(delivered_order(line()))
    with pytest.raises(VersionMismatch):
        Expected(RETURN_ID, frozenset()).check(rma)
