"""Moved to ``adapters.driven.kafka.deadletters`` (filters, reading, replay).

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driven.kafka.deadletters.filters import (
    DEAD_LETTER_SOURCES,
    TRUNCATED_HEADER,
    DeadLetterFilter,
    RefusedMessage,
    format_positions,
    parse_moment,
    parse_positions,
)
from adapters.driven.kafka.deadletters.reading import (
    Page,
    _merge,
    count,
    count_by_code,
    describe,
    list_dead_letters,
    list_page,
    read_dead_letters,
    scan,
)
from adapters.driven.kafka.deadletters.replay import (
    DeadLetterTally,
    Planned,
    ReplayPlan,
    ReplayResult,
    plan_replay,
    replay,
    replay_dead_letter,
)

__all__ = [
    "DEAD_LETTER_SOURCES",
    "TRUNCATED_HEADER",
    "DeadLetterFilter",
    "DeadLetterTally",
    "Page",
    "Planned",
    "RefusedMessage",
    "ReplayPlan",
    "ReplayResult",
    "_merge",
    "count",
    "count_by_code",
    "describe",
    "format_positions",
    "list_dead_letters",
    "list_page",
    "parse_moment",
    "parse_positions",
    "plan_replay",
    "read_dead_letters",
    "replay",
    "replay_dead_letter",
    "scan",
]
