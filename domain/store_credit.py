"""The store-credit account of one customer: a balance per currency, credited by returns
paid as store credit and by refunds to a store-credit payment, debited by orders paid with
it. The balance never goes below zero: an order spending more is refused whole.

Every move names its reference (credit id, refund id, order number): a command repeated
with the same reference moves nothing twice.

Every credit carries a code (``SC-`` and 12 base32 characters, 60 random bits): what the
customer is told and may pay with instead of their customer id. A code names the account,
not a slice of it: any of the account's codes spends its whole balance.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.aggregate import Aggregate
from domain.errors import InsufficientStoreCredit, InvalidCommand
from domain.events import Cause, StoreCreditCredited, StoreCreditEvent, StoreCreditSpent
from domain.values import Money

STORE_CREDIT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:oms:store-credit")
CREDIT_REASONS = frozenset({"return", "refund", "order_cancelled"})
# RFC 4648 base32 without padding: no 0/1/8/9, so a code read aloud is not mistyped as O/I/B/g.
CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
CODE_LENGTH = 12


def new_store_credit_code() -> str:
    """An unguessable code, drawn once by the handler and kept in the event (replays keep it)."""
    return "SC-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def is_store_credit_code(text: str) -> bool:
    body = text.removeprefix("SC-")
    return (
        text.startswith("SC-")
        and len(body) == CODE_LENGTH
        and all(c in CODE_ALPHABET for c in body)
    )


def store_credit_id_for(customer_id: str) -> UUID:
    return uuid5(STORE_CREDIT_NAMESPACE, customer_id)


class StoreCreditAccount(Aggregate[StoreCreditEvent]):
    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.customer_id = ""
        self.balances: dict[str, Money] = {}
        self.movements: list[StoreCreditEvent] = []
        self.applied: set[tuple[str, str]] = set()
        self.codes: list[str] = []

    @classmethod
    def open(cls, customer_id: str) -> StoreCreditAccount:
        account = cls(store_credit_id_for(customer_id))
        account.customer_id = customer_id
        return account

    def balance(self, currency: str) -> Money:
        return self.balances.get(currency, Money.zero(currency))

    def credit(
        self,
        amount: Money,
        reference: str,
        reason: str,
        at: datetime,
        cause: Cause,
        code: str | None = None,
    ) -> None:
        if reason not in CREDIT_REASONS:
            raise InvalidCommand(f"store credit is credited for {sorted(CREDIT_REASONS)}")
        if code is not None and not is_store_credit_code(code):
            raise InvalidCommand(f"{code!r} is not a store-credit code")
        self._check_positive(amount)
        if amount.is_zero or (reason, reference) in self.applied:
            return
        self._trigger(
            StoreCreditCredited,
            cause,
            at,
            customer_id=self.customer_id,
            reference=reference,
            reason=reason,
            amount=amount,
            balance=self.balance(amount.currency) + amount,
            code=code,
        )

    def spend(self, amount: Money, reference: str, at: datetime, cause: Cause) -> None:
        self._check_positive(amount)
        if amount.is_zero or ("order", reference) in self.applied:
            return
        available = self.balance(amount.currency)
        if amount.amount > available.amount:
            raise InsufficientStoreCredit(
                f"order {reference} spends {amount} of store credit; customer "
                f"{self.customer_id} has {available}"
            )
        self._trigger(
            StoreCreditSpent,
            cause,
            at,
            customer_id=self.customer_id,
            reference=reference,
            amount=amount,
            balance=available - amount,
        )

    @staticmethod
    def _check_positive(amount: Money) -> None:
        if amount.amount < 0:
            raise InvalidCommand(f"a store-credit move is never negative ({amount})")

    def apply(self, event: StoreCreditEvent) -> None:
        self.customer_id = event.customer_id
        self.balances[event.amount.currency] = event.balance
        self.movements.append(event)
        match event:
            case StoreCreditCredited():
                self.applied.add((event.reason, event.reference))
                if event.code is not None:
                    self.codes.append(event.code)
            case StoreCreditSpent():
                self.applied.add(("order", event.reference))
