"""The return note and the store receipt as people print them: given an RMA, the PDF read
back (pypdf) and the HTML say its number (also as a QR code), item names, amounts, fee,
where to send it, the policy, and that a cancelled or expired one must not be sent."""

from __future__ import annotations

import re
from decimal import Decimal
from io import BytesIO

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader
from starlette.requests import Request

from adapters.driving.api.barcodes import encoded_value, qr_drawing
from adapters.driving.api.documents import render_html, settlement_lines, wants_pdf
from adapters.driving.api.pdf import render_pdf
from adapters.driving.api.sheets import Sheet, note_sheet, receipt_sheet
from adapters.settings import Settings
from domain.returns import Return, ReturnStatus
from domain.values import ReasonCode
from tests.unit.builders import (
    BOOK,
    CAUSE,
    RMA,
    WAREHOUSE,
    authorized_return,
    day,
    delivered_order,
    eur,
    line,
    wants,
)

ADDRESSES = {WAREHOUSE: "Returns Centre, 9 Quay Street, 20457 Hamburg, Germany"}
NAMES = {1: "Red running shoe", 2: "Blue scarf"}


def an_rma() -> Return:
    """Two lines authorized on day 20, 18 days after delivery: a late change of mind (10%
    fee) and a defect (no fee)."""
    order = delivered_order(line(1, price="50.00"), line(2, price="30.00"))
    return authorized_return(order, wants(1), wants(2, reason=ReasonCode.DEFECTIVE), at=day(20))


def note(rma: Return) -> Sheet:
    return note_sheet(rma, NAMES, ADDRESSES, rma.expires_at(BOOK))


def pdf_text(sheet: Sheet) -> str:
    reader = PdfReader(BytesIO(render_pdf(sheet)))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_pdf_note_reads_back_number_items_amounts_fee_address_and_policy() -> None:
    text = pdf_text(note(an_rma()))
    assert RMA in text
    assert "Red running shoe" in text and "Blue scarf" in text
    assert "50.00 EUR" in text and "30.00 EUR" in text
    assert "Restocking fee: 5.00 EUR" in text
    assert "45.00 EUR" in text  # the shoe less its fee
    assert "9 Quay Street" in text and "20457 Hamburg" in text
    assert "Return window: 30 days" in text and "10%" in text
    assert "Send the parcel by 2025-04-22" in text  # authorized day 20, expires 30 days on
    assert "What happens next" in text
    assert "CANCELLED" not in text


def test_a_cancelled_rmas_note_says_so_before_anything_else() -> None:
    rma = an_rma()
    rma.cancel("changed my mind", day(21), CAUSE)
    sheet = note(rma)
    text = pdf_text(sheet)
    assert "CANCELLED" in text and "Do not send this parcel" in text
    assert text.index("CANCELLED") < text.index("Red running shoe")
    assert "Send the parcel by" not in text  # no deadline for what must not be sent
    assert "class=void>CANCELLED" in render_html(sheet)


def test_an_expired_rmas_note_says_it_expired() -> None:
    rma = an_rma()
    assert rma.expire(BOOK, day(51), CAUSE)
    assert "EXPIRED" in pdf_text(note(rma))


def test_the_pdf_draws_a_qr_code_of_the_rma_number() -> None:
    assert encoded_value(qr_drawing(RMA)) == RMA
    page = PdfReader(BytesIO(render_pdf(note(an_rma())))).pages[0]
    content = page.get_contents()
    assert content is not None
    # A QR code of version 1 or more has at least 21 x 21 modules, a good share of them
    # dark: each is a filled rectangle in the page (the text uses none).
    assert len(re.findall(rb" re\b", content.get_data())) > 100


def test_the_html_note_has_the_same_facts_and_an_inline_svg_qr_code() -> None:
    html = render_html(note(an_rma()))
    assert f'data-value="{RMA}"><svg' in html
    assert "<?xml" not in html
    for fact in ("Red running shoe", "Blue scarf", "45.00 EUR", "5.00 EUR", "9 Quay Street"):
        assert fact in html
    assert "Return window: 30 days" in html


def test_item_names_are_escaped_in_the_html() -> None:
    html = render_html(note_sheet(an_rma(), {1: "<script>x</script>"}, ADDRESSES, None))
    assert "<script>x" not in html and "&lt;script&gt;x" in html


def test_an_unconfigured_warehouse_is_still_named() -> None:
    assert "Returns warehouse WH-RET" in render_html(note_sheet(an_rma(), NAMES, {}, None))


def test_the_receipt_pdf_reads_back_store_receipt_and_pending() -> None:
    rma = an_rma()
    settled, pending = settlement_lines(rma)
    text = pdf_text(receipt_sheet(rma, NAMES, "S1", "SR-1", settled, pending))
    assert "Return receipt" in text and RMA in text
    assert "Store: S1" in text and "Receipt: SR-1" in text and "Red running shoe" in text


def request_with(accept: str) -> Request:
    return Request({"type": "http", "headers": [(b"accept", accept.encode())]})


def test_pdf_is_served_when_asked_for_and_html_stays_the_default() -> None:
    assert wants_pdf(request_with("application/pdf"), None)
    assert not wants_pdf(request_with("text/html,application/pdf;q=0.9,*/*"), None)
    assert not wants_pdf(request_with("*/*"), None)
    assert wants_pdf(request_with("text/html"), "pdf")
    assert not wants_pdf(request_with("application/pdf"), "html")


def test_warehouse_addresses_are_read_as_json_from_the_environment() -> None:
    env = {"OMS_WAREHOUSE_ADDRESSES": '{"WH-2": "Dock 2, 1 Pier Road, Leeds"}'}
    assert Settings.from_env(env).warehouse_addresses == {"WH-2": "Dock 2, 1 Pier Road, Leeds"}
    assert "WH-1" in Settings.from_env({}).warehouse_addresses
    with pytest.raises(ValueError, match="OMS_WAREHOUSE_ADDRESSES"):
        Settings.from_env({"OMS_WAREHOUSE_ADDRESSES": "Dock 2"})


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999.99"), places=2)
reasons = st.sampled_from(
    [ReasonCode.CHANGED_MIND, ReasonCode.DEFECTIVE, ReasonCode.SIZE_TOO_SMALL]
)


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.tuples(prices, st.integers(1, 3), reasons), min_size=1, max_size=3),
    on_day=st.integers(3, 30),
)
def test_the_printed_lines_add_up_to_the_expected_refund(
    lines: list[tuple[Decimal, int, ReasonCode]], on_day: int
) -> None:
    order = delivered_order(
        *(line(n, price=str(p), quantity=q) for n, (p, q, _) in enumerate(lines, start=1))
    )
    rma = authorized_return(
        order,
        *(wants(n, q, reason=r) for n, (_, q, r) in enumerate(lines, start=1)),
        at=day(on_day),
    )
    assume(rma.state.status is ReturnStatus.AUTHORIZED)
    sheet = note(rma)
    total = rma.state.shipping_refund or eur(0)
    for printed in sheet.lines:
        assert printed.amount == printed.unit_price.times(printed.quantity) - printed.fee
        total = total + printed.amount
    assert total == rma.state.expected_refund
    fees = sum((printed.fee.amount for printed in sheet.lines), Decimal(0))
    assert rma.state.restocking_fee == eur(fees)


def test_a_name_beyond_the_pdf_fonts_latin_characters_still_prints() -> None:
    text = pdf_text(note_sheet(an_rma(), {1: "Schuh Größe 42 \u2013 日本"}, ADDRESSES, None))
    assert "Schuh Größe 42 \u2013" in text  # the CJK glyphs print as boxes: the fonts lack them
