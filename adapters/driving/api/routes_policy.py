"""``GET /v1/policy``: the return policy in force, as the operators' file states it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import api_of
from adapters.driving.api.problems import problem_responses
from domain.policy_file import describe_policy

router = APIRouter(tags=["policy"])


class PolicyOut(BaseModel):
    version: str | None = Field(
        description="The policy file's version (or content hash) recorded on each decision "
        "as policy_version; null: the built-in defaults."
    )
    default: dict[str, Any] = Field(description="The policy for every line (amounts in EUR).")
    channel: dict[str, dict[str, Any]] = Field(description="Overrides per order channel.")
    category: dict[str, dict[str, Any]] = Field(
        description="Overrides per product category; they win over the channel's."
    )
    review: dict[str, Any] | None = Field(
        default=None,
        description="The rules that hold a request for review besides the amount thresholds"
        " (serial returners, reasons always reviewed); customer service only, null for others.",
    )


@router.get("/v1/policy", response_model=PolicyOut, responses=problem_responses(401, 403))
def policy(
    request: Request,
    principal: Annotated[Principal, Depends(Allow(Role.CUSTOMER_SERVICE, Role.PORTAL, Role.STORE))],
) -> dict[str, Any]:
    """The return policy in force now: what the next decision will apply. The terms are
    public (the portal states them to customers), so the portal and stores may read it."""
    described = describe_policy(api_of(request).service.policy_book)
    if principal.role is not Role.CUSTOMER_SERVICE:
        # How a shop spots serial returners is not a term it states to customers.
        described["review"] = None
    return described
