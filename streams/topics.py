"""Moved to ``adapters.driven.kafka.topics`` (``all_topic_specs`` is ``topic_specs`` there).

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driven.kafka.topics import ORDERS, WMS_RECEIPTS, dlq, topic_specs

all_topic_specs = topic_specs

__all__ = ["ORDERS", "WMS_RECEIPTS", "all_topic_specs", "dlq", "topic_specs"]
