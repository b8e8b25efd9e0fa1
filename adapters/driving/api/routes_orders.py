"""Orders and serials: what can still be returned, where a serial was sold, and the store
tablet's finder (by order id, customer or serial)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import (
    PORTAL_READ,
    Limit,
    Offset,
    api_of,
    check_order_owner,
    page_of,
    paged,
)
from adapters.driving.api.models import PageOut
from adapters.driving.api.problems import Problem, problem_responses
from adapters.driving.api.routes_serials import life_of
from domain.errors import NotFound

router = APIRouter(prefix="/v1", tags=["orders"], responses=problem_responses(401, 403, 422))
CS = Role.CUSTOMER_SERVICE


@router.get("/orders/{order_number}", responses=problem_responses(404), openapi_extra=PORTAL_READ)
def get_order(
    principal: Annotated[Principal, Depends(Allow(CS, Role.PORTAL, Role.STORE))],
    order_number: str,
    request: Request,
) -> dict[str, Any]:
    """The order with each line's returnable quantity (portal: with ``X-Customer-Email``)."""
    api = api_of(request)
    check_order_owner(api, principal, request, order_number)
    return api.service.order_view(order_number)


@router.get("/serials/{serial}", responses=problem_responses(404))
def serial_lookup(
    principal: Annotated[Principal, Depends(Allow(CS, Role.STORE, Role.WAREHOUSE))],
    serial: str,
    request: Request,
) -> dict[str, Any]:
    """Where a serial was sold: order, sale date, value and warranty status; and its whole
    life from the read model (it trails the event store by the lag): ``current`` (where it is
    now), ``timeline`` (sales, returns, inspections, repair and vendor legs, restocks) and
    ``flags`` (sales while it was in repair, at a vendor or with another customer)."""
    api = api_of(request)
    sales = api.service.serial_lookup(serial)
    life = life_of(api, serial)
    if not sales and not life:
        raise NotFound(f"serial {serial} was never sold")
    return {"serial": serial, "sales": sales, **life}


@router.get("/order-search", response_model=PageOut)
def find_orders(
    principal: Annotated[Principal, Depends(Allow(CS, Role.STORE))],
    request: Request,
    order_number: str | None = None,
    customer_id: str | None = None,
    email: str | None = None,
    serial: str | None = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Find the original order of a return by exactly one of the criteria."""
    given = [c for c in (order_number, customer_id, email, serial) if c]
    if len(given) != 1:
        raise Problem(422, "one_criterion", "give one of order_number, customer_id, email, serial")
    api = api_of(request)
    page = page_of(request, limit, offset)
    lookups = api.service.lookups
    numbers: list[str] = []
    if order_number:
        numbers = [order_number]
    elif serial:
        numbers = list(dict.fromkeys(s["order_number"] for s in api.service.serial_lookup(serial)))
    else:
        # The lookups take a limit only: fetch up to the page's end and slice.
        wanted = page.offset + page.limit + 1
        ids = (
            lookups.orders_of_customer(customer_id, wanted)
            if customer_id
            else lookups.orders_of_email(email or "", wanted)
        )
        numbers = [n for n in (api.service.order_number_of(i) for i in ids) if n]
    views = []
    for number in numbers[page.offset : page.offset + page.limit + 1]:
        try:
            views.append(api.service.order_view(number))
        except NotFound:
            continue
    return paged(request, page, views)
