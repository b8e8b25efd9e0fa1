"""Moved to ``adapters.driven.readmodels`` (base, store, writer, positions, rebuild, queries).

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driven.readmodels.base import (
    POISON,
    RETRYABLE,
    ChangedRow,
    Conn,
    FailedEvent,
    Offsets,
    ReducerFailed,
    StateRace,
    Then,
    consumer_name,
    failed_events,
    record_failures,
    topics_of,
)
from adapters.driven.readmodels.positions import ResumePoint, projection_lag, resume_points
from adapters.driven.readmodels.queries import return_rates, stock_at, unbalanced_refunds
from adapters.driven.readmodels.rebuild import (
    RebuildProgress,
    Snapshot,
    differences,
    equal,
    rebuild,
    rebuild_many,
    snapshot,
)
from adapters.driven.readmodels.store import ReadModelStore, create_tables
from adapters.driven.readmodels.writer import apply_batches, jsonable, write_merged

__all__ = [
    "POISON",
    "RETRYABLE",
    "ChangedRow",
    "Conn",
    "FailedEvent",
    "Offsets",
    "ReadModelStore",
    "RebuildProgress",
    "ReducerFailed",
    "ResumePoint",
    "Snapshot",
    "StateRace",
    "Then",
    "apply_batches",
    "consumer_name",
    "create_tables",
    "differences",
    "equal",
    "failed_events",
    "jsonable",
    "projection_lag",
    "rebuild",
    "rebuild_many",
    "record_failures",
    "resume_points",
    "return_rates",
    "snapshot",
    "stock_at",
    "topics_of",
    "unbalanced_refunds",
    "write_merged",
]
