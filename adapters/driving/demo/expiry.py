"""Deadlines of the day: an RMA asked for weeks ago and never shipped expires, and a
keep-the-item offer nobody accepted lapses, by the operator's ``rma expire`` (or the
integrations workers' own sweep, if it comes first: the journey line says which)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from adapters.driven.eventstore import create_service
from adapters.driven.kafka.topics import ORDERS
from adapters.driven.sweeps import run_round
from adapters.driving.demo.cast import eur, sum_amounts
from adapters.driving.demo.stage import Stage
from domain.application import Ctx, ReturnsService
from domain.commands import OfferKeepItem, RequestReturn
from domain.events import Cause
from domain.returns import RequestedLine
from domain.values import ReasonCode

OPERATOR = "cli/demo-operator"


class ExpirySteps(Stage):
    """What runs out: played on two orders of its own, so no other journey is touched."""

    def deadlines_run_out(self) -> None:
        now = datetime.now(UTC)
        idle_order = self._history_order("EXP", "SOCKS-3P", "9.90", delivered=now - timedelta(45))
        kept_order = self._history_order("KIP", "SOCKS-3P", "9.90", delivered=now - timedelta(15))
        service = create_service(self.database_url, pool_size=2)
        try:
            # The API stamps commands with today's clock, so the weeks-old part of these
            # journeys is recorded as history with its own dates, as the orders are.
            idle = self._history(service, now - timedelta(days=40), self._request(idle_order))
            kept = self._history(service, now - timedelta(days=10), self._request(kept_order))
            self._history(service, now - timedelta(days=10), OfferKeepItem(kept, valid_days=7))
            dry_expire = service.due_to_expire(now, 10_000)
            dry_lapse = service.due_to_lapse(now, 10_000)
            listed = {d.return_id for d in dry_expire + dry_lapse}
            self.progress.say(
                f"rma expire --dry-run: {len(dry_expire)} RMAs to expire, {len(dry_lapse)}"
                " offers to lapse"
            )
            run_round(service, actor=OPERATOR)
        finally:
            service.close()

        expired = self.people.cs.get(f"/v1/returns/{idle}").body
        lapsed = self.people.cs.get(f"/v1/returns/{kept}").body
        refused = self.people.portal.post(
            f"/v1/returns/{kept}/keep-item/accept",
            {},
            idempotency_key=self.key("late-accept"),
            email=self._email("KIP"),
            refusals=(409,),
        )
        if expired["status"] != "expired" or lapsed["status"] != "authorized":
            raise RuntimeError(f"deadlines: {expired['status']}, {lapsed['status']} after a sweep")
        if idle not in listed or kept not in listed:
            raise RuntimeError("deadlines: the dry run did not list what then changed")
        self.report.journeys.append(
            f"expiry: {expired['rma_number']} (authorized 40 days ago, never shipped) expired"
            f" and {lapsed['rma_number']}'s keep-the-item offer (ran out 3 days ago) lapsed"
            f" by {self._who(idle, 'rma.expired')} after the dry run listed both; accepting"
            f" the lapsed offer: {refused.status} {refused.code}"
        )

    # ------------------------------------------------------------ plumbing
    def _history_order(self, prefix: str, sku: str, price: str, *, delivered: datetime) -> str:
        # No "-<run>-" in it: the day's counts of the run's orders must not see these.
        order_id = f"{prefix}-{self.run_id}"
        placed = delivered - timedelta(days=3)
        total = sum_amounts([price], [1], "4.90")
        self.publish(
            ORDERS,
            order_id,
            "order.placed",
            {
                "order_id": order_id,
                "customer_id": f"C-{prefix}-{self.run_id}",
                "channel": "web",
                "customer_email": self._email(prefix),
                "placed_at": placed.isoformat(),
                "lines": [
                    {
                        "line_no": 1,
                        "sku": sku,
                        "name": sku,
                        "quantity": 1,
                        "unit_price": eur(price),
                        "serials": [],
                        "supplier": "Stride Ltd",
                        "category": "apparel",
                    }
                ],
                "shipping": eur("4.90"),
                "payments": [{"payment_id": "p1", "method": "card", "amount": eur(total)}],
            },
            placed,
            "commerce/web",
        )
        self.publish(
            ORDERS,
            order_id,
            "order.fulfilled",
            {
                "order_id": order_id,
                "location_id": "WH-1",
                "lines": [{"line_no": 1, "quantity": 1, "serials": []}],
            },
            placed + timedelta(hours=5),
            "wms/WH-1",
        )
        self.publish(
            ORDERS,
            order_id,
            "order.delivered",
            {"order_id": order_id, "delivered_at": delivered.isoformat()},
            delivered,
            "carrier/tracking",
        )
        self.producer.flush()
        self.wait(
            f"{order_id} delivered",
            lambda: self.count(
                "SELECT count(*) FROM oms_events e JOIN oms_orders o"
                " ON o.order_id = e.originator_id"
                " WHERE e.topic = 'order.delivered' AND o.order_number = %s",
                order_id,
            ),
            1,
        )
        return order_id

    def _email(self, prefix: str) -> str:
        return f"c-{prefix.lower()}-{self.run_id.lower()}@example.com"

    @staticmethod
    def _request(order_id: str) -> RequestReturn:
        return RequestReturn(
            order_number=order_id,
            lines=(RequestedLine(line_no=1, quantity=1, reason=ReasonCode.SIZE_TOO_LARGE),),
        )

    @staticmethod
    def _history(
        service: ReturnsService, at: datetime, command: RequestReturn | OfferKeepItem
    ) -> uuid.UUID:
        cause = Cause(actor="portal-web", source="demo/history", correlation_id=str(uuid.uuid4()))
        return service.run(Ctx(cause, at=at), command).aggregate_id

    def _who(self, return_id: uuid.UUID, event_type: str) -> str:
        actor = self.count(
            "SELECT count(*) FROM oms_events WHERE originator_id = %s AND topic = %s"
            " AND convert_from(state, 'UTF8') LIKE %s",
            return_id,
            event_type,
            f'%"actor":"{OPERATOR}"%',
        )
        return "`rma expire` (the operator)" if actor else "the integrations workers' sweep"
