"""Printable HTML documents: the return note for the parcel and the store receipt.

HTML rather than PDF: every browser prints it, and it needs no extra dependency. Every
value is escaped: reasons and comments are customer input.
"""

from __future__ import annotations

from html import escape

from domain.handlers.counter import still_to_bring
from domain.returns import Return
from domain.values import ReturnMethod

_STYLE = (
    "body{font-family:sans-serif;max-width:40em;margin:2em auto}"
    "table{border-collapse:collapse;width:100%}td,th{border:1px solid #999;padding:.3em}"
    "@media print{button{display:none}}"
)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body>{body}<button onclick="print()">Print</button></body></html>'
    )


def _lines(rma: Return, with_condition: bool = False) -> str:
    conditions = {i.line_no: i.condition.value for i in rma.state.inspected_items if i.line_no}
    head = "<tr><th>Line</th><th>SKU</th><th>Qty</th><th>Reason</th>"
    head += "<th>Condition</th></tr>" if with_condition else "</tr>"
    rows = []
    for line in rma.state.lines.values():
        row = (
            f"<tr><td>{line.line_no}</td><td>{escape(line.sku)}</td><td>{line.quantity}</td>"
            f"<td>{escape(line.reason.value)}</td>"
        )
        if with_condition:
            row += f"<td>{escape(conditions.get(line.line_no, ''))}</td>"
        rows.append(row + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def return_note(rma: Return) -> str:
    s = rma.state
    number = escape(s.rma_number or "")
    return _page(
        f"Return note {s.rma_number}",
        f"<h1>Return note</h1><p class=rma><strong>{number}</strong></p>"
        f"<p>Order {escape(s.order_number or '')} &middot; ship to warehouse "
        f"{escape(s.destination_warehouse or '')} &middot; label "
        f"{escape(s.label_reference or '')}</p>"
        f"{_lines(rma)}"
        f"<h2>Packing instructions</h2><p>{escape(s.instructions or '')}</p>"
        f"<p>Expected refund: {escape(str(s.expected_refund or ''))}</p>",
    )


def store_receipt(rma: Return, store_id: str, store_return_id: str) -> str:
    """Both kinds of counter returns: an in-store return, or an RMA received at the store."""
    s = rma.state
    settled, pending = settlement_lines(rma)
    return _page(
        f"Return receipt {s.rma_number}",
        f"<h1>Return receipt</h1><p>Store {escape(store_id)} &middot; receipt "
        f"{escape(store_return_id)} &middot; {escape(s.rma_number or '')} &middot; order "
        f"{escape(s.order_number or '')}</p>"
        f"{_lines(rma, with_condition=True)}"
        f"<h2>Refund ({escape(s.refund_method.value)})</h2>"
        f"<h3>Settled</h3><ul class=settled>{_items(settled)}</ul>"
        f"<h3>Pending</h3><ul class=pending>{_items(pending)}</ul>"
        f"<p>Status: {escape(s.status.value)}</p>",
    )


def _items(entries: list[str]) -> str:
    return "".join(f"<li>{escape(entry)}</li>" for entry in entries) or "<li>none</li>"


def settlement_lines(rma: Return) -> tuple[list[str], list[str]]:
    """(settled, pending): each refund and store credit with its amount, method and status,
    an exchange, and the RMA's items the customer has still to bring."""
    s = rma.state
    settled: list[str] = []
    pending: list[str] = []
    for refund_id, refund in s.refunds.items():
        methods = ", ".join(sorted({a.method.value for a in refund.allocations})) or "refund"
        entry = f"{refund_id}: {refund.amount} to {methods} ({refund.status})"
        (settled if refund.status == "settled" else pending).append(entry)
    if s.store_credit is not None:
        settled.append(f"store credit: {s.store_credit} (issued)")
    if s.replacement_order_id is not None:
        settled.append("exchange: replacement order placed")
    if s.method is ReturnMethod.STORE:
        for line_no, quantity in sorted(still_to_bring(rma).items()):
            if quantity:
                pending.append(f"line {line_no} {s.lines[line_no].sku}: {quantity} to bring")
    return settled, pending
