"""Moved to ``adapters.driving.dev``.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driving.dev import write_dev_keys, write_endpoints

__all__ = [
    "write_dev_keys",
    "write_endpoints",
]
