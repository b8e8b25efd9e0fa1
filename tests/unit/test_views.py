"""The API's JSON view of an RMA: staff see its repair and vendor legs, the customer not."""

from __future__ import annotations

from adapters.driving.api.views import return_view
from domain.values import Condition, Disposition, ReasonCode
from tests.unit.builders import inspected, inspected_return, shop_order, wants


def test_staff_see_the_legs_of_an_rma_and_the_customer_does_not() -> None:
    rma = inspected_return(
        shop_order(),
        inspected(condition=Condition.DEFECTIVE, disposition=Disposition.REPAIR, serial="SN-1"),
        inspected(condition=Condition.DEFECTIVE, disposition=Disposition.RESTOCK, serial="SN-2"),
        lines=(wants(quantity=2, reason=ReasonCode.DEFECTIVE),),
    )
    [leg] = return_view(rma, legs=True)["legs"]
    assert (leg["leg_id"], leg["kind"], leg["status"], leg["serial"], leg["open"]) == (
        "L1",
        "repair",
        "awaiting_dispatch",
        "SN-1",
        True,
    )
    assert "steps" not in leg
    assert "legs" not in return_view(rma)
