"""The people's steps of the day: customers, customer service and analytics, through the API."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from adapters.driving.demo.cast import REASONS_BY_SUPPLIER, REFUSED_IN_REVIEW, Rma, Sale
from adapters.driving.demo.clients import ApiError, Caller
from adapters.driving.demo.stage import Stage, wait_for_projections
from domain.values import ReasonCode, RefundMethod


class PeopleSteps(Stage):
    """What people do, each through their own tool's key on the HTTP API."""

    # ------------------------------------------------------------ people, through the API
    def customers_ask_to_return(self, sales: list[Sale]) -> list[Rma]:
        """Two in three ask on the portal, the others call customer service, who asks for
        them; a policy refusal is a 422 problem whose code the summary counts."""
        chosen = [s for s in sales if not s.business and self.random.random() < 0.4]
        rmas = [self.a_business_returns_a_faulty_batch(s) for s in sales if s.business]
        for done, sale in enumerate(chosen, 1):
            line = self.random.choice(sale.lines)
            reason = self.random.choice(REASONS_BY_SUPPLIER[line["supplier"]])
            on_portal = self.random.random() < 2 / 3
            method = self.random.choice(
                [RefundMethod.ORIGINAL_PAYMENT] * 6
                + [RefundMethod.STORE_CREDIT, RefundMethod.EXCHANGE]
            )
            caller = self.people.portal if on_portal else self.people.cs
            email = sale.email if on_portal else None
            # The tool shows the order with what is still returnable before the form.
            order = caller.get(f"/v1/orders/{sale.order_id}", email=email).body
            shown = next(ln for ln in order["lines"] if ln["line_no"] == line["line_no"])
            if shown["returnable_quantity"] < 1:
                self.progress.say(f"{sale.order_id}: {line['sku']} has nothing left to return")
                self.progress.step("customer return requests", done, len(chosen))
                continue
            body = {
                "order_number": sale.order_id,
                "refund_method": method.value,
                "comment": "demo",
                "lines": [
                    {
                        "line_no": shown["line_no"],
                        "quantity": 1,
                        "reason": reason.value,
                        "serial": line["serials"][0] if line["serials"] else None,
                    }
                ],
            }
            key = self.key("rma")
            answer = caller.post(
                "/v1/returns", body, idempotency_key=key, email=email, refusals=(422,)
            )
            if answer.status == 422:
                code = answer.code or "refused"
                self.report.refused[code] = self.report.refused.get(code, 0) + 1
                if answer.body.get("return_id"):  # a policy's refusal is stored on an RMA
                    self.report.rmas[str(answer.body["return_id"])] = "rejected"
                self.progress.say(f"{sale.order_id}: {line['sku']} ({reason.value}) -> 422 {code}")
                self.progress.step("customer return requests", done, len(chosen))
                continue
            if on_portal:
                self.report.portal_rmas += 1
            else:
                self.report.cs_rmas += 1
            if not self.report.replays:
                self.show_a_retried_post(caller, body, key, email, answer.body)
            result = answer.body
            if result["status"] == "pending_review":
                result = self.customer_service_reviews(result, reason)
            self.report.rmas[result["return_id"]] = result["status"]
            self.progress.say(
                f"{sale.order_id}: {line['sku']} ({reason.value}, {method.value}) -> "
                f"{result['status']} {result.get('rma_number') or result.get('code') or ''}"
            )
            if result["status"] == "authorized":
                rmas.append(Rma(sale, line, UUID(result["return_id"]), result["rma_number"]))
            self.progress.step("customer return requests", done, len(chosen))
        return rmas

    def a_business_returns_a_faulty_batch(self, sale: Sale) -> Rma:
        """A company calls customer service about four faulty laptops of five. Worth more
        than the review threshold, the RMA waits for an agent's approval; its card refund
        is above the payment provider's limit, so it will be declined and followed up."""
        line = sale.lines[0]
        body = {
            "order_number": sale.order_id,
            "comment": "four of five laptops show dead pixels",
            "lines": [{"line_no": line["line_no"], "quantity": 4, "reason": "defective"}],
        }
        answer = self.people.cs.post("/v1/returns", body, idempotency_key=self.key("rma"))
        self.report.cs_rmas += 1
        result = answer.body
        if result["status"] == "pending_review":
            result = self.customer_service_reviews(result, ReasonCode.DEFECTIVE)
        self.report.rmas[result["return_id"]] = result["status"]
        self.progress.say(
            f"{sale.order_id}: 4 x {line['sku']} (defective) -> {result['status']} "
            f"{result.get('rma_number') or ''}"
        )
        if result["status"] != "authorized":
            raise ApiError("POST", "/v1/returns", answer.status, result.get("code"), str(result))
        return Rma(sale, line, UUID(result["return_id"]), result["rma_number"], quantity=4)

    def show_a_retried_post(
        self,
        caller: Caller,
        body: dict[str, Any],
        key: str,
        email: str | None,
        first: dict[str, Any],
    ) -> None:
        """Send a POST again under its key, as a client does after a lost answer: the API
        must give back the first result and record nothing new."""
        again = caller.post("/v1/returns", body, idempotency_key=key, email=email).body
        if again["return_id"] != first["return_id"]:
            raise ApiError(
                "POST", "/v1/returns", 201, "not_idempotent", f"{again} differs from {first}"
            )
        self.report.replays += 1
        self.progress.say(
            f"retried POST /v1/returns with the same Idempotency-Key: the same RMA "
            f"{first['rma_number'] or first['return_id']} came back, nothing new was recorded"
        )

    def customer_service_reviews(self, held: dict[str, Any], reason: ReasonCode) -> dict[str, Any]:
        """Approve or refuse an RMA held for review, on the version the agent read."""
        path = f"/v1/returns/{held['return_id']}"
        read = self.people.cs.get(path)
        refuse = reason in REFUSED_IN_REVIEW
        answer = self.people.cs.post(
            f"{path}/refuse" if refuse else f"{path}/approve",
            {"reason": "a used laptop is not taken back for a change of mind"} if refuse else {},
            idempotency_key=self.key("review"),
            if_match=read.etag,
        )
        verdict = "refused" if refuse else "approved"
        self.report.reviewed[verdict] = self.report.reviewed.get(verdict, 0) + 1
        self.progress.say(
            f"held for review: customer service {verdict} it on version {read.etag} (If-Match)"
        )
        return answer.body

    def customer_service_offers_keep_item(self, rmas: list[Rma]) -> tuple[list[Rma], list[Rma]]:
        """Cheap items are not worth the freight: customer service offers a partial refund
        to keep them, the customer accepts on the portal. Returns (to ship, kept)."""
        to_ship, kept = [], []
        for rma in rmas:
            path = f"/v1/returns/{rma.return_id}"
            read = self.people.cs.get(path)
            if not read.body["keep_item_eligible"]:
                to_ship.append(rma)
                continue
            offer = self.people.cs.post(
                f"{path}/keep-item/offer",
                {"valid_days": 7},
                idempotency_key=self.key("keep-offer"),
                if_match=read.etag,
            )
            seen = self.people.portal.get(path, email=rma.sale.email)
            self.people.portal.post(
                f"{path}/keep-item/accept",
                {},
                idempotency_key=self.key("keep-accept"),
                if_match=seen.etag,
                email=rma.sale.email,
            )
            self.report.kept += 1
            kept.append(rma)
            amount = offer.body.get("amount") or {}
            self.progress.say(
                f"{rma.rma_number}: {rma.line['sku']} kept by the customer for "
                f"{amount.get('amount', '?')} {amount.get('currency', '')}"
            )
        return to_ship, kept

    def open_blind_returns(self) -> list[dict[str, Any]]:
        """Every page of the open blind returns (other runs' parcels may still be open)."""
        found: list[dict[str, Any]] = []
        page = self.people.cs.get("/v1/blind-returns", limit=200).body
        while True:
            found += page["items"]
            if not page["next"]:
                return found
            page = self.people.cs.get(page["next"]).body

    # ------------------------------------------------------------ money
    def payments_settle_and_customer_service_follows_up(self, rmas: list[Rma]) -> None:
        """Once the provider has answered, customer service lists the failed refunds on the
        read side and pays each again as store credit, on the RMA version it read."""
        ids = [r.return_id for r in rmas]

        def settled() -> int:
            return self.count(
                "SELECT count(*) FROM oms_returns WHERE return_id = ANY(%s) AND status IN"
                " ('closed', 'refund_failed', 'partially_refunded', 'authorized', 'expired')",
                ids,
            )

        self.wait("refunds settled", settled, len(ids))
        wait_for_projections(self.database_url)  # the refunds list is a read model
        ours = {str(i) for i in ids}
        failed: list[str] = []
        page = self.people.cs.get("/v1/refunds", status="failed", limit=200).body
        while True:
            failed += [r["return_id"] for r in page["items"] if r["return_id"] in ours]
            if not page["next"]:
                break
            page = self.people.cs.get(page["next"]).body
        for return_id in dict.fromkeys(failed):
            path = f"/v1/returns/{return_id}"
            read = self.people.cs.get(path)
            if read.body["status"] != "refund_failed":
                continue  # paid since, or already followed up
            self.people.cs.post(
                f"{path}/refund-retry",
                {"as_store_credit": True},
                idempotency_key=self.key("refund-retry"),
                if_match=read.etag,
            )
            self.report.refunds_as_store_credit += 1
            self.progress.say(
                f"{read.body['rma_number']}: refund declined by the provider, "
                "paid as store credit instead"
            )
