"""Moved to ``adapters.driving.stack``.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driving.stack import kafka, postgres

__all__ = [
    "kafka",
    "postgres",
]
