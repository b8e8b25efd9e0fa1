"""Moved to ``adapters.driving.cli`` (``workers``, ``dlq``, ``refunds``).

A temporary re-export so importers, the ``rma`` script and ``python -m adapters.cli`` keep
working until the import codemod runs.
"""

import sys

from adapters.driving.cli import build_parser, main, subcommands
from adapters.driving.cli.dlq import add_dlq_parser, run_dlq
from adapters.driving.cli.refunds import add_refunds_parser, run_refunds
from adapters.driving.cli.workers import (
    run_api,
    run_demo,
    run_dev,
    run_integrations,
    run_lag,
    run_projections,
    run_provision,
    run_rebuild,
    run_relay,
    start_relay,
)

__all__ = [
    "add_dlq_parser",
    "add_refunds_parser",
    "build_parser",
    "main",
    "run_api",
    "run_demo",
    "run_dev",
    "run_dlq",
    "run_integrations",
    "run_lag",
    "run_projections",
    "run_provision",
    "run_rebuild",
    "run_refunds",
    "run_relay",
    "start_relay",
    "subcommands",
]

if __name__ == "__main__":
    sys.exit(main())
