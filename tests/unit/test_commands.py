"""Commands as data: each has exactly one handler, and the reads it hints at are right."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from domain import commands
from domain.commands import (
    AdjustStock,
    CancelOrder,
    Command,
    CountStock,
    DeliverOrder,
    FulfilOrder,
    PlaceOrder,
    RecordInStoreReturn,
    RequestReturn,
)
from domain.handlers import HANDLERS, _merged
from domain.handlers.orders import place_order
from domain.inventory import inventory_id_for
from domain.order import order_id_for
from domain.returns import store_return_id_for
from domain.values import Channel, Money, RefundMethod

COMMANDS = [
    c
    for c in vars(commands).values()
    if isinstance(c, type) and issubclass(c, Command) and c is not Command
]


def test_every_command_has_a_handler_and_every_handler_a_command() -> None:
    assert len(COMMANDS) >= 28
    assert set(HANDLERS) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.__name__)
def test_commands_are_frozen_slotted_dataclasses(command: type[Command]) -> None:
    assert dataclasses.is_dataclass(command)
    assert command.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in vars(command)


def test_a_second_handler_for_one_command_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match="PlaceOrder has two handlers"):
        _merged({PlaceOrder: place_order}, {PlaceOrder: place_order})


def test_reads_name_the_aggregate_each_command_loads_first() -> None:
    eur = Money.of("1.00", "EUR")
    assert PlaceOrder("W-1", "c", None, Channel.WEB, (), (), eur).reads() == order_id_for("W-1")
    assert FulfilOrder("W-1", "WH-1", ()).reads() == order_id_for("W-1")
    assert DeliverOrder("W-1").reads() == order_id_for("W-1")
    assert CancelOrder("W-1", "fraud").reads() == order_id_for("W-1")
    assert CountStock("SKU", "WH-1", 3, "C-1").reads() == inventory_id_for("SKU", "WH-1")
    assert AdjustStock("SKU", "WH-1", -1, "r", "A-1").reads() == inventory_id_for("SKU", "WH-1")
    counter = RecordInStoreReturn(
        "SR-1", "STORE-7", "staff", "W-1", (), (), RefundMethod.ORIGINAL_PAYMENT
    )
    assert counter.reads() == store_return_id_for("STORE-7", "SR-1")
    assert RequestReturn("W-1", ()).reads() is None


def test_a_requested_return_keeps_its_id_so_a_rerun_reuses_it() -> None:
    command = RequestReturn("W-1", ())
    assert isinstance(command.return_id, uuid.UUID)
    assert command.return_id != RequestReturn("W-1", ()).return_id
    assert hash(command) == hash(dataclasses.replace(command))
