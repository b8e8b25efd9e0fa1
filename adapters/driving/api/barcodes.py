"""The RMA number as a QR code, one drawing for both formats: vector rectangles in the PDF
and an inline SVG in the HTML, so a scanner reads the same code from either print."""

from __future__ import annotations

from reportlab.graphics import renderSVG
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing

QR_SIZE = 96.0
"""Side of the printed code in points (about 34 mm): scanners read it from arm's length."""


def qr_drawing(value: str, size: float = QR_SIZE) -> Drawing:
    widget = QrCodeWidget(value, barLevel="M")
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
    drawing.add(widget)
    return drawing


def encoded_value(drawing: Drawing) -> str:
    """What the code in ``drawing`` encodes, as handed to the QR encoder."""
    return str(drawing.contents[0].value)


def qr_svg(value: str) -> str:
    """An ``<svg>`` element to inline in HTML (no XML prolog, which HTML does not allow)."""
    svg = str(renderSVG.drawToString(qr_drawing(value)))
    return svg[svg.index("<svg") :]
