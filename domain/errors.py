"""Named domain errors. Each carries a stable machine-readable ``code`` for APIs and DLQs."""

from __future__ import annotations


class DomainError(Exception):
    """A command the domain refuses. Nothing was changed."""

    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidValue(DomainError):
    code = "invalid_value"


class InvalidCommand(DomainError):
    code = "invalid_command"


class NotFound(DomainError):
    code = "not_found"


class AlreadyExists(DomainError):
    code = "already_exists"


class InvalidTransition(DomainError):
    """The aggregate is not in a state where this command makes sense."""

    code = "invalid_transition"


class ResolutionLocked(InvalidTransition):
    """The way the customer is settled can no longer change: they were paid (refund or store
    credit), an exchange was ordered, or the return is over."""

    code = "resolution_locked"


class OfferLapsed(InvalidTransition):
    """The keep-the-item offer ran out before it was accepted: the item is to be shipped."""

    code = "keep_item_offer_lapsed"


class PolicyViolation(DomainError):
    """The return policy refuses the request; ``code`` is the policy's reason."""

    code = "policy_violation"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class QuantityExceeded(DomainError):
    code = "quantity_exceeded"


class RefundLimitExceeded(DomainError):
    code = "refund_limit_exceeded"


class IdempotencyKeyReused(DomainError):
    """An idempotency key already ran another request (another fingerprint): its result
    belongs to that request, and running this one under it would be neither."""

    code = "idempotency_key_reused"


class ConcurrencyConflict(DomainError):
    """Someone else changed the aggregate first; retrying on fresh state may succeed."""

    code = "concurrency_conflict"


class VersionMismatch(DomainError):
    """The caller acted on a version of the aggregate that is no longer current (an HTTP
    ``If-Match``); ``current_version`` lets it re-read and decide again."""

    code = "version_mismatch"

    def __init__(self, message: str, current_version: int) -> None:
        super().__init__(message)
        self.current_version = current_version


class ContradictsSale(InvalidTransition):
    """A report about a store sale that disagrees with what the counter already did
    (handed the goods over where and as sold): a repeat of the sale is accepted instead."""

    code = "contradicts_sale"


class WrongReturnMethod(InvalidTransition):
    """An RMA presented somewhere its return method does not send it (a carrier RMA at a
    store counter): the customer keeps the goods and customer service changes the RMA."""

    code = "wrong_return_method"


class InsufficientStoreCredit(DomainError):
    """An order spends more store credit than the customer's balance holds."""

    code = "insufficient_store_credit"


class UnknownStoreCreditCode(NotFound):
    """An order pays with a store-credit code no account was ever credited under."""

    code = "unknown_store_credit_code"
