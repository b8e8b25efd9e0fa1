"""Analytics over a chosen period: returns and return rates, and what returns cost.

Read from the daily read models (``period_analytics``), so the figures trail the event store
by that projection's lag. One rule for every number: counts are JSON integers, money is a
decimal string next to its ``currency`` (at the currency's scale), rates are decimal
strings with 4 places (``null`` when nothing was sold)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from adapters.driven.readmodels import analytics
from adapters.driven.readmodels.analytics import BadPeriod, GroupBy, Period
from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import Day, api_of
from adapters.driving.api.problems import Problem, problem_responses

router = APIRouter(
    prefix="/v1/analytics", tags=["analytics"], responses=problem_responses(401, 403, 422)
)
Readers = Annotated[Principal, Depends(Allow(Role.ANALYTICS, Role.CUSTOMER_SERVICE))]

NUMBERS = (
    " Counts are JSON integers; money is a decimal string beside its `currency`, at that"
    " currency's scale; rates are decimal strings with 4 places. Days are UTC days,"
    " `from` and `to` included, at most 366 of them (otherwise 422 `invalid_period`)."
)
From = Annotated[Day, Query(alias="from", description="First day of the period (YYYY-MM-DD).")]
To = Annotated[Day, Query(description="Last day of the period, included (YYYY-MM-DD).")]
By = Annotated[GroupBy | None, Query(description="Also break the figures down by this dimension.")]


class ReturnFigures(BaseModel):
    rmas: int = Field(description="Returns requested in the period with a line in the group.")
    lines: int = Field(description="Return lines requested.")
    units: int = Field(description="Units asked back (refused lines included).")
    rejected_lines: int = Field(description="Of those lines, how many the policy refused.")
    sold_units: int = Field(
        description="Units sold in the period (orders placed then, less cancelled ones;"
        " by reason: every unit sold)."
    )
    return_rate: str | None = Field(
        description="units / sold_units, 4 places; null when nothing was sold.",
        pattern=r"^\d+\.\d{4}$",
    )


class ReturnGroup(ReturnFigures):
    key: str = Field(description="The value of `group_by` (`channel`: the order's sales channel).")


class ReturnsOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    group_by: GroupBy | None
    totals: ReturnFigures
    groups: list[ReturnGroup] = Field(
        description="One per value of `group_by` with a return in the period, most units first."
    )


class CostFigures(BaseModel):
    currency: str
    refunded: str = Field(
        description="Paid back: refunds settled and store credit issued (with its bonus),"
        " already net of the fees kept.",
        pattern=r"^-?\d+(\.\d+)?$",
    )
    fees_kept: str = Field(
        description="Restocking fees kept on those payouts.", pattern=r"^-?\d+(\.\d+)?$"
    )
    scrapped_units: int = Field(description="Units inspected and scrapped.")
    scrapped_value: str = Field(
        description="Their value at the sale price.", pattern=r"^-?\d+(\.\d+)?$"
    )
    supplier_credits: str = Field(
        description="Credits received from suppliers for returned goods.",
        pattern=r"^-?\d+(\.\d+)?$",
    )
    net_cost: str = Field(
        description="refunded + scrapped_value - supplier_credits.", pattern=r"^-?\d+(\.\d+)?$"
    )


class CostGroup(CostFigures):
    key: str = Field(description="The value of `group_by` (`channel`: the order's sales channel).")


class CostsOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    group_by: GroupBy | None
    totals: list[CostFigures] = Field(description="One per currency.")
    groups: list[CostGroup] = Field(
        description="One per value of `group_by` and currency, highest net cost first."
    )


def _period(start: Any, end: Any) -> Period:
    try:
        return Period(start, end)
    except BadPeriod as error:
        raise Problem(422, "invalid_period", str(error)) from error


@router.get(
    "/returns",
    response_model=ReturnsOut,
    response_model_by_alias=True,
    description="Returns requested in the period and the return rate (units returned over"
    " units sold in the same period), in total and by reason, SKU, supplier, category or"
    " sales channel." + NUMBERS,
)
def returns(
    principal: Readers, request: Request, start: From, to: To, group_by: By = None
) -> dict[str, Any]:
    return analytics.returns(api_of(request).rows, _period(start, to), group_by)


@router.get(
    "/costs",
    response_model=CostsOut,
    response_model_by_alias=True,
    description="What returns cost in the period, per currency: money paid back, fees kept,"
    " scrapped value and supplier credits, each on the day it happened, and the net cost."
    + NUMBERS,
)
def costs(
    principal: Readers, request: Request, start: From, to: To, group_by: By = None
) -> dict[str, Any]:
    return analytics.costs(api_of(request).rows, _period(start, to), group_by)
