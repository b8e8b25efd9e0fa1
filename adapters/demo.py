"""Moved to ``adapters.driving.demo`` (``cast``, ``stage``, ``people``, ``scenario``,
``report``); ``start_relay`` to ``adapters.driving.cli.workers``, the composition root.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driving.cli.workers import start_relay
from adapters.driving.demo.cast import Rma, Sale
from adapters.driving.demo.report import play, rebuild_check
from adapters.driving.demo.scenario import Demo

__all__ = ["Demo", "Rma", "Sale", "play", "rebuild_check", "start_relay"]
