"""A customer's store credit: the balance they can spend and every move on it.

Read from the event store (the account aggregate), not a projection: customer service
checks a balance an order is about to spend, so it must not trail by the projections' lag.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from adapters.driving.api.auth import Allow, Principal, Role
from adapters.driving.api.context import api_of
from adapters.driving.api.problems import problem_responses
from domain.events import StoreCreditCredited

router = APIRouter(prefix="/v1", tags=["read side"], responses=problem_responses(401, 403, 422))
People = Annotated[Principal, Depends(Allow(Role.CUSTOMER_SERVICE, Role.ANALYTICS))]


class StoreCreditBalanceOut(BaseModel):
    currency: str
    balance: str


class StoreCreditMovementOut(BaseModel):
    kind: str
    """``credited`` or ``spent``."""
    reason: str
    """Credited: ``return``, ``refund`` or ``order_cancelled``; spent: ``order``."""
    reference: str
    """The return's credit id, the refund id or the order number."""
    amount: str
    currency: str
    balance: str
    """The balance in ``currency`` after this move."""
    at: datetime
    version: int
    code: str | None = None
    """Credited: the code issued with this credit (credits from before codes have none)."""


class StoreCreditOut(BaseModel):
    customer_id: str
    balances: list[StoreCreditBalanceOut]
    movements: list[StoreCreditMovementOut]
    version: int


@router.get("/customers/{customer_id}/store-credit", response_model=StoreCreditOut)
def store_credit(principal: People, customer_id: str, request: Request) -> StoreCreditOut:
    """The customer's store-credit balance per currency (never negative) and its moves,
    oldest first; a customer never credited has no balances and no moves."""
    account = api_of(request).service.get_store_credit(customer_id)
    return StoreCreditOut(
        customer_id=customer_id,
        balances=[
            StoreCreditBalanceOut(currency=currency, balance=str(money.amount))
            for currency, money in sorted(account.balances.items())
        ],
        movements=[
            StoreCreditMovementOut(
                kind="credited" if isinstance(event, StoreCreditCredited) else "spent",
                reason=event.reason if isinstance(event, StoreCreditCredited) else "order",
                reference=event.reference,
                amount=str(event.amount.amount),
                currency=event.amount.currency,
                balance=str(event.balance.amount),
                at=event.timestamp,
                version=event.originator_version,
                code=event.code if isinstance(event, StoreCreditCredited) else None,
            )
            for event in account.movements
        ],
        version=account.version,
    )


Spenders = Annotated[Principal, Depends(Allow(Role.STORE, Role.CUSTOMER_SERVICE))]


class StoreCreditCodeOut(BaseModel):
    """What a code is worth, and nothing else: no customer, no moves."""

    code: str
    balances: list[StoreCreditBalanceOut]
    """The balance per currency of the account the code spends (every code of an account
    spends the same balance)."""


@router.get(
    "/store-credit/{code}",
    response_model=StoreCreditCodeOut,
    responses=problem_responses(404),
)
def store_credit_code(principal: Spenders, code: str, request: Request) -> StoreCreditCodeOut:
    """The balance a store-credit code can spend, for a till or customer service; 404 for a
    code never issued."""
    account = api_of(request).service.get_store_credit_by_code(code)
    return StoreCreditCodeOut(
        code=code,
        balances=[
            StoreCreditBalanceOut(currency=currency, balance=str(money.amount))
            for currency, money in sorted(account.balances.items())
        ],
    )
