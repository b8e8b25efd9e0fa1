"""Parsing an operator's DLQ filters and paging dead letters, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.driven.kafka.deadletters.filters import (
    DeadLetterFilter,
    RefusedMessage,
    format_positions,
    parse_moment,
    parse_positions,
)
from adapters.driven.kafka.deadletters.reading import _merge

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def letter(
    partition: int = 0,
    offset: int = 0,
    *,
    timestamp_ms: int = 0,
    code: str = "not_found",
    key: bytes | None = b"K-1",
    value: bytes = b"{}",
    headers: dict[str, bytes] | None = None,
) -> RefusedMessage:
    return RefusedMessage(
        topic="oms.orders.v1",
        partition=partition,
        offset=offset,
        code=code,
        reason="why",
        key=key,
        value=value,
        headers=headers or {},
        timestamp_ms=timestamp_ms,
    )


def cloud_event(event_id: str = "e-1", event_type: str = "order.fulfilled") -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "wms/WH-1",
            "type": event_type,
            "data": {"order_id": "K-1"},
        }
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("1h", NOW - timedelta(hours=1)),
        ("2d", NOW - timedelta(days=2)),
        ("1w", NOW - timedelta(weeks=1)),
        ("45s", NOW - timedelta(seconds=45)),
        ("1h30m", NOW - timedelta(hours=1, minutes=30)),
        ("2026-12-01T08:15:00Z", datetime(2026, 12, 1, 8, 15, tzinfo=UTC)),
        ("2026-12-01T09:15:00+01:00", datetime(2026, 12, 1, 8, 15, tzinfo=UTC)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_a_moment_is_rfc3339_a_day_or_a_span_back_from_now(text: str, expected: datetime) -> None:
    assert parse_moment(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "1x", "h1", "yesterday", "2026-12-01T08:15:00", "1h 30m"])
def test_a_moment_that_is_none_of_those_or_has_no_offset_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_moment(text, now=NOW)


def test_a_cursor_is_partition_offset_pairs_and_prints_back_the_same() -> None:
    assert parse_positions("1:22,0:15") == {0: 15, 1: 22}
    assert format_positions({1: 22, 0: 15}) == "0:15,1:22"
    assert parse_positions(format_positions({3: 0})) == {3: 0}


@pytest.mark.parametrize("text", ["", "0", "0:", ":5", "a:1", "0:-1", "0:1,0:2", "0:1;1:2"])
def test_a_malformed_cursor_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_positions(text)


def test_codes_keys_and_the_time_window_must_all_hold() -> None:
    since = datetime(2026, 12, 4, 10, tzinfo=UTC)
    until = datetime(2026, 12, 4, 11, tzinfo=UTC)
    at_since = int(since.timestamp() * 1000)
    at_until = int(until.timestamp() * 1000)
    selection = DeadLetterFilter(
        codes=frozenset({"not_found", "invalid_data"}),
        since=since,
        until=until,
        keys=frozenset({b"K-1"}),
    )
    assert selection.matches(letter(timestamp_ms=at_since))  # since is inclusive
    assert not selection.matches(letter(timestamp_ms=at_since - 1))
    assert not selection.matches(letter(timestamp_ms=at_until))  # until is exclusive
    assert selection.matches(letter(timestamp_ms=at_until - 1, code="invalid_data"))
    assert not selection.matches(letter(timestamp_ms=at_since, code="invalid_json"))
    assert not selection.matches(letter(timestamp_ms=at_since, key=b"K-2"))
    assert not selection.matches(letter(timestamp_ms=at_since, key=None))


def test_cursors_bound_offsets_per_partition_and_leave_other_partitions_whole() -> None:
    selection = DeadLetterFilter(after={0: 5}, before={1: 3})
    assert not selection.matches(letter(0, 5))
    assert selection.matches(letter(0, 6))
    assert selection.matches(letter(1, 2))
    assert not selection.matches(letter(1, 3))
    assert selection.matches(letter(2, 0))


def test_cloud_event_id_and_type_filters_tolerate_garbage() -> None:
    selection = DeadLetterFilter(ids=frozenset({"e-1"}), types=frozenset({"order.fulfilled"}))
    assert selection.matches(letter(value=cloud_event()))
    assert not selection.matches(letter(value=cloud_event(event_id="e-2")))
    assert not selection.matches(letter(value=cloud_event(event_type="order.placed")))
    for garbage in (b"{broken", b"\xff\xfe", b"[1, 2]", b'"e-1"', b"", b'{"id": 1}'):
        assert not selection.matches(letter(value=garbage))


def test_without_a_body_filter_garbage_is_never_parsed_and_still_matches() -> None:
    assert DeadLetterFilter(codes=frozenset({"invalid_json"})).matches(
        letter(code="invalid_json", value=b"{broken")
    )


def test_only_an_untruncated_valid_cloud_event_can_be_replayed() -> None:
    assert letter(value=cloud_event()).why_not_replayable() is None
    truncated = letter(
        value=cloud_event(), headers={"x-dlq-truncated": b"true", "x-dlq-original-size": b"9"}
    )
    assert "truncated" in (truncated.why_not_replayable() or "")
    assert letter(value=b"{broken").why_not_replayable() == "not a JSON object"
    assert "CloudEvent" in (letter(value=b'{"id": "x"}').why_not_replayable() or "")
    # Unknown types and bad data may be accepted after a fix: they can be replayed.
    assert letter(value=cloud_event(event_type="order.teleported")).why_not_replayable() is None


def _pages(
    runs: list[list[RefusedMessage]], newest_first: bool, size: int
) -> list[list[RefusedMessage]]:
    """Pages as the command takes them: merge what is past the cursor, take a page."""
    pages: list[list[RefusedMessage]] = []
    cursor: dict[int, int] = {}
    while True:
        if newest_first:
            rest = [
                [m for m in reversed(r) if m.offset < cursor.get(m.partition, 10**9)] for r in runs
            ]
        else:
            rest = [[m for m in r if m.offset > cursor.get(m.partition, -1)] for r in runs]
        page = _merge(rest, newest_first, size)
        if not page:
            return pages
        pages.append(page)
        for m in page:
            cursor[m.partition] = m.offset


@given(
    stamps=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), min_size=0, max_size=60),
    size=st.integers(1, 7),
    newest_first=st.booleans(),
)
def test_pages_after_a_cursor_are_disjoint_complete_and_continue_one_merge(
    stamps: list[tuple[int, int]], size: int, newest_first: bool
) -> None:
    # Timestamps are not monotonic within a partition (producers stamp them): the merge
    # must still page deterministically.
    runs: dict[int, list[RefusedMessage]] = {}
    for partition, stamp in stamps:
        run = runs.setdefault(partition, [])
        run.append(letter(partition, len(run), timestamp_ms=stamp))
    ordered = list(runs.values())
    whole = _merge(
        [list(reversed(r)) if newest_first else r for r in ordered], newest_first, len(stamps)
    )
    pages = _pages(ordered, newest_first, size)
    flat = [m for page in pages for m in page]
    assert flat == whole
    assert len({(m.partition, m.offset) for m in flat}) == len(stamps)
    assert all(len(page) == size for page in pages[:-1])


def test_the_command_line_parses_repeated_codes_moments_and_cursors() -> None:
    from adapters.driving.cli import build_parser

    argv = "dlq list oms.orders.v1 --code not_found --code invalid_data"
    argv += " --since 2026-12-01T00:00:00Z --until 2026-12-02 --after 0:3,1:9"
    argv += " --order oldest --limit 10 --json"
    args = build_parser().parse_args(argv.split())
    assert args.code == ["not_found", "invalid_data"]
    assert args.since == datetime(2026, 12, 1, tzinfo=UTC)
    assert args.until == datetime(2026, 12, 2, tzinfo=UTC)
    assert args.after == {0: 3, 1: 9}
    assert (args.order, args.limit, args.json) == ("oldest", 10, True)
    single = build_parser().parse_args(["dlq", "replay", "oms.orders.v1", "--offset", "7"])
    assert (single.partition, single.offset, single.dry_run) == (None, 7, False)


@pytest.mark.parametrize(
    "argv",
    [
        ["--since", "yesterday"],
        ["--until", "2026-12-01T10:00:00"],
        ["--after", "0-3"],
        ["--limit", "0"],
        ["--order", "random"],
    ],
)
def test_the_command_line_refuses_what_it_cannot_read(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from adapters.driving.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["dlq", "list", "oms.orders.v1", *argv])
    assert exit_.value.code == 2
    assert "error" in capsys.readouterr().err
