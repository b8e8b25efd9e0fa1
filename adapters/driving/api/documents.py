"""Printable documents: the return note for the parcel and the store receipt, as HTML (the
default: every browser prints it) or PDF (``Accept: application/pdf`` or ``?format=pdf``),
both rendered from one ``Sheet`` (sheets.py). Every value is escaped in the HTML: reasons,
comments and item names are customer or merchant input.
"""

from __future__ import annotations

from html import escape
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from adapters.driving.api.barcodes import qr_svg
from adapters.driving.api.pdf import render_pdf
from adapters.driving.api.sheets import Sheet, money
from domain.handlers.counter import still_to_bring
from domain.returns import Return
from domain.values import ReturnChannel, ReturnMethod

DocumentFormat = Literal["html", "pdf"]
PDF = "application/pdf"
# The OpenAPI content of a document's 200: HTML by default, PDF when asked for.
DOCUMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The document: HTML, or PDF with ``Accept: application/pdf`` or"
        " ``?format=pdf``.",
        "content": {
            "text/html": {"schema": {"type": "string"}},
            PDF: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

_STYLE = (
    "body{font-family:sans-serif;max-width:46em;margin:2em auto}"
    "table{border-collapse:collapse;width:100%}td,th{border:1px solid #999;padding:.3em}"
    "td.num{text-align:right}.qr{float:right;width:8em;height:8em}"
    ".void{border:3px solid #b00;color:#b00;font-size:1.3em;font-weight:bold;padding:.5em}"
    "address{font-style:normal;margin:.5em 0 1em}"
    "@media print{button{display:none}}"
)


def wants_pdf(request: Request, format: DocumentFormat | None) -> bool:
    """``?format=`` decides; without it, PDF only for a client that asks for PDF and not
    for HTML (a browser's ``Accept`` lists HTML and stays on HTML)."""
    if format is not None:
        return format == "pdf"
    accept = request.headers.get("accept", "")
    return PDF in accept and "text/html" not in accept


def printed(sheet: Sheet, request: Request, format: DocumentFormat | None) -> Response:
    if wants_pdf(request, format):
        name = f"{sheet.rma_number or 'document'}.pdf"
        return Response(
            render_pdf(sheet),
            media_type=PDF,
            headers={"Content-Disposition": f'inline; filename="{name}"', "Vary": "Accept"},
        )
    return HTMLResponse(render_html(sheet), headers={"Vary": "Accept"})


def render_html(sheet: Sheet) -> str:
    number = escape(sheet.rma_number)
    body = []
    if sheet.rma_number:
        body.append(
            f'<div class=qr role=img aria-label="QR code of {number}" '
            f'data-value="{number}">{qr_svg(sheet.rma_number)}</div>'
        )
    body.append(f"<h1>{escape(sheet.title)}</h1><p class=rma><strong>{number}</strong></p>")
    if sheet.banner:
        body.append(f"<p class=void>{escape(sheet.banner)}</p>")
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in sheet.facts)
    body.append(f"<dl>{facts}</dl>")
    if sheet.address:
        lines = "<br>".join(escape(part) for part in sheet.address)
        body.append(f"<h2>Send to</h2><address>{lines}</address>")
    body.append(_table(sheet))
    totals = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in sheet.totals)
    body.append(f"<dl class=totals>{totals}</dl>")
    for kind, title, entries in sheet.sections:
        body.append(f"<h2>{escape(title)}</h2><ul class={kind}>{_items(list(entries))}</ul>")
    policy = "".join(f"<p>{escape(paragraph)}</p>" for paragraph in sheet.policy)
    body.append(f"<h2>Policy</h2><div class=policy>{policy}</div>")
    return _page(f"{sheet.title} {sheet.rma_number}", "".join(body))


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body>{body}<button onclick="print()">Print</button></body></html>'
    )


def _table(sheet: Sheet) -> str:
    head = (
        "<tr><th>Line</th><th>Item</th><th>SKU</th><th>Qty</th><th>Reason</th>"
        "<th>Unit price</th><th>Fee</th><th>Amount</th><th>Note</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{line.line_no}</td><td>{escape(line.name)}</td><td>{escape(line.sku)}</td>"
        f"<td class=num>{line.quantity}</td><td>{escape(line.reason)}</td>"
        f"<td class=num>{money(line.unit_price)}</td><td class=num>{money(line.fee)}</td>"
        f"<td class=num>{money(line.amount)}</td><td>{escape(line.note)}</td></tr>"
        for line in sheet.lines
    )
    return f"<table>{head}{rows}</table>"


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
    # A counter return (channel store) took its goods when it was recorded: only an RMA
    # still on its way to a counter has items to bring.
    if s.method is ReturnMethod.STORE and s.channel is not ReturnChannel.STORE:
        for line_no, quantity in sorted(still_to_bring(rma).items()):
            if quantity:
                pending.append(f"line {line_no} {s.lines[line_no].sku}: {quantity} to bring")
    return settled, pending
