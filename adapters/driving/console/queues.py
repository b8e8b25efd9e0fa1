"""Work queues: every named queue with its count and oldest item, and each queue's items,
from the same read models and scoping as ``/v1/queues`` (a store or warehouse key sees
its own)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from adapters.driving.api import routes_queues
from adapters.driving.api.auth import Role
from adapters.driving.console.sessions import Staff
from adapters.driving.console.web import StaffOnly, add_navigation, render

router = APIRouter(prefix="/console", include_in_schema=False)

QueueStaff = Annotated[
    Staff,
    Depends(StaffOnly(Role.CUSTOMER_SERVICE, Role.STORE, Role.WAREHOUSE, Role.ANALYTICS)),
]
add_navigation(Role.CUSTOMER_SERVICE, "/console/queues", "Work queues")
add_navigation(Role.WAREHOUSE, "/console/queues", "Work queues")


def item_link(role: Role, item: dict[str, Any]) -> str | None:
    """Where a queue item is worked on, for this role: customer service opens the RMA (or
    the blind parcel's matching page), the warehouse its receiving page, a store its
    counter page; None when the role has no page for it."""
    number, return_id = item.get("rma_number"), item.get("return_id")
    if role in (Role.CUSTOMER_SERVICE, Role.ADMIN):
        if item.get("status") == "blind_unmatched" and return_id:
            return f"/console/blind/{return_id}"
        return f"/console/returns/{number or return_id}"
    if role is Role.WAREHOUSE:
        return f"/console/warehouse/rmas/{number or return_id}"
    if role is Role.STORE and number:
        return f"/console/store/rmas/{number}"
    return None


def age(seconds: int | None) -> str:
    """An age as people say it: "3 d 4 h", "2 h 5 min", "40 s"; "" for none."""
    if seconds is None:
        return ""
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


@router.get("/queues", response_class=HTMLResponse)
def queues_page(request: Request, staff: QueueStaff) -> Response:
    summary = routes_queues.queues(staff.principal, request)["queues"]
    template = "_queue_summary.html" if request.headers.get("hx-request") else "queues.html"
    return render(request, staff, template, queues=summary, age=age)


@router.get("/queues/{name}", response_class=HTMLResponse)
def queue_page(request: Request, staff: QueueStaff, name: str, offset: int = 0) -> Response:
    queue = routes_queues.QUEUES.get(name)
    if queue is None:
        return render(
            request,
            staff,
            "error.html",
            status_code=404,
            title="No such queue",
            message=f"There is no queue {name!r}.",
        )
    page = routes_queues.queue_items(
        staff.principal, request, name, limit=None, offset=max(0, offset)
    )
    return render(
        request,
        staff,
        "queue.html",
        queue=queue,
        page=page,
        age=age,
        link=lambda item: item_link(staff.principal.role, item),
    )
