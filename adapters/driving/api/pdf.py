"""A ``Sheet`` as a one-page (or more) A4 PDF, written by reportlab: pure Python, and its
QR code is drawn as vectors, so it prints sharp at any resolution."""

from __future__ import annotations

from io import BytesIO

from reportlab.graphics import renderPDF
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import simpleSplit
from reportlab.pdfgen.canvas import Canvas

from adapters.driving.api.barcodes import QR_SIZE, qr_drawing
from adapters.driving.api.sheets import Sheet, money

MARGIN = 50.0
FONT = "Helvetica"
BOLD = "Helvetica-Bold"
# Columns of the items table: x of each, from the left margin.
COLUMNS = (0.0, 22.0, 190.0, 290.0, 320.0, 385.0, 440.0)


class _Writer:
    """Writes lines top-down, starting a new page when the current one is full."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.width, self.height = A4
        self.y = self.height - MARGIN

    def room(self, needed: float) -> None:
        if self.y - needed < MARGIN:
            self.canvas.showPage()
            self.y = self.height - MARGIN

    def text(self, value: str, size: float = 10, font: str = FONT, gap: float = 4) -> None:
        for part in simpleSplit(value, font, size, self.width - 2 * MARGIN) or [""]:
            self.room(size + gap)
            self.y -= size + gap
            self.canvas.setFont(font, size)
            self.canvas.drawString(MARGIN, self.y, part)

    def row(self, cells: tuple[str, ...], font: str = FONT, size: float = 9) -> None:
        self.room(size + 5)
        self.y -= size + 5
        self.canvas.setFont(font, size)
        for x, cell in zip(COLUMNS, cells, strict=False):
            self.canvas.drawString(MARGIN + x, self.y, cell)


def render_pdf(sheet: Sheet) -> bytes:
    out = BytesIO()
    canvas = Canvas(out, pagesize=A4, invariant=True)
    canvas.setTitle(f"{sheet.title} {sheet.rma_number}")
    w = _Writer(canvas)
    top = w.y
    if sheet.rma_number:
        renderPDF.draw(
            qr_drawing(sheet.rma_number), canvas, w.width - MARGIN - QR_SIZE, top - QR_SIZE
        )
    w.text(sheet.title, size=20, font=BOLD)
    w.text(sheet.rma_number, size=16, font=BOLD)
    if sheet.banner:
        w.y -= 6
        canvas.setFillColorRGB(0.75, 0, 0)
        w.text(sheet.banner, size=13, font=BOLD)
        canvas.setFillColorRGB(0, 0, 0)
    for label, value in sheet.facts:
        w.text(f"{label}: {value}")
    w.y = min(w.y, top - QR_SIZE - 10)
    if sheet.address:
        w.text("Send to", font=BOLD, size=11, gap=8)
        for part in sheet.address:
            w.text(part)
    w.y -= 8
    w.row(("#", "Item", "SKU", "Qty", "Unit price", "Fee", "Amount"), font=BOLD)
    for line in sheet.lines:
        w.row(
            (
                str(line.line_no),
                line.name[:32],
                line.sku,
                str(line.quantity),
                money(line.unit_price),
                money(line.fee),
                money(line.amount),
            )
        )
        detail = f"reason: {line.reason}" + (f"; {line.note}" if line.note else "")
        w.row(("", detail), size=8)
    w.y -= 6
    for label, value in sheet.totals:
        w.text(f"{label}: {value}", font=BOLD)
    for _, title, entries in sheet.sections:
        w.text(title, font=BOLD, size=11, gap=10)
        for entry in entries:
            w.text(entry)
    w.text("Policy", font=BOLD, size=11, gap=10)
    for paragraph in sheet.policy:
        w.text(paragraph, size=9)
    canvas.showPage()
    canvas.save()
    return out.getvalue()
