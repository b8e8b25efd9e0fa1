"""The demo's HTTP helpers that need no server: its keys and how it counts calls."""

from __future__ import annotations

from adapters.driving.api import Role
from adapters.driving.demo.clients import PRINCIPALS, demo_keys, route_of


def test_each_demo_key_maps_to_its_roles_principal_and_only_hashes_are_kept() -> None:
    ring, plain = demo_keys()
    assert set(plain) == {Role.PORTAL, Role.CUSTOMER_SERVICE, Role.ANALYTICS, Role.WAREHOUSE}
    for role, key in plain.items():
        principal = ring.principal_for(key)
        assert principal is not None
        assert (principal.name, principal.role) == (PRINCIPALS[role], role)
    assert ring.principal_for("demo-portal-guess") is None
    assert not any(key in str(vars(ring)) for key in plain.values())


def test_calls_are_counted_per_route_not_per_rma_or_order() -> None:
    assert route_of("/v1/returns") == "/v1/returns"
    assert route_of("/v1/returns/RMA-7K2Q-M4XD/keep-item/offer") == (
        "/v1/returns/{ref}/keep-item/offer"
    )
    assert route_of("/v1/blind-returns/eff86f82-5ec8-50b6-8823-4b65118268e2/match") == (
        "/v1/blind-returns/{ref}/match"
    )
    assert route_of("/v1/orders/WEB-EB6B2-0013") == "/v1/orders/{ref}"
    assert route_of("/v1/blind-returns?limit=200&offset=200") == "/v1/blind-returns"
