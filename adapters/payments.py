"""Moved to ``adapters.driven.payments``.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driven.payments import (
    PaymentProvider,
    Publish,
    RecoveringKafkaPublish,
    RefundInstruction,
    SandboxPaymentProvider,
)

__all__ = [
    "PaymentProvider",
    "Publish",
    "RecoveringKafkaPublish",
    "RefundInstruction",
    "SandboxPaymentProvider",
]
