"""Operating a DLQ on the real broker: filters, pages, counts and replay by filter.

Each test has topics of its own, and writes its dead letters as the workers do (the
headers from ``streams.records.dlq_headers``), stamped with the times it needs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from adapters.driven.kafka.deadletters.filters import DeadLetterFilter
from adapters.driven.kafka.deadletters.reading import count, list_page
from adapters.driven.kafka.deadletters.replay import plan_replay, replay
from adapters.driven.kafka.provisioning import TopicSpec, provision_topics
from adapters.driven.kafka.topics import dlq
from adapters.driving.cli import main
from streams.records import DeadLetter, InboundRecord, dlq_headers
from tests.integration import builders as m

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PARTITIONS = 2
NOW = datetime.now(UTC)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Letter:
    partition: int
    key: bytes | None
    value: bytes
    code: str
    at: datetime
    truncated: bool = False


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    name = f"test.dlq-ops-{uuid.uuid4().hex[:8]}.v1"
    provision_topics(
        kafka_bootstrap, {name: TopicSpec(PARTITIONS), dlq(name): TopicSpec(PARTITIONS)}
    )
    return name


@pytest.fixture
def cli(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    monkeypatch.setenv("OMS_KAFKA_BOOTSTRAP", kafka_bootstrap)

    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        return code, capsys.readouterr().out

    yield run


def put(bootstrap: str, topic: str, letters: list[Letter]) -> list[tuple[int, int]]:
    """Write dead letters as the workers do; returns their (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = []
        for index, item in enumerate(letters):
            record = InboundRecord(
                topic, item.partition, 1000 + index, item.key, item.value, (), None
            )
            headers = dlq_headers(DeadLetter(record, f"refused: {item.code}", item.code))
            if item.truncated:
                headers += [
                    ("x-dlq-truncated", b"true"),
                    ("x-dlq-original-size", b"999999"),
                    ("x-dlq-original-sha256", b"0" * 64),
                ]
            futures.append(
                producer.send(
                    dlq(topic),
                    key=item.key,
                    value=item.value,
                    partition=item.partition,
                    headers=headers,
                    timestamp_ms=int(item.at.timestamp() * 1000),
                )
            )
        producer.flush(30)
        return [(f.get(10).partition, f.get(10).offset) for f in futures]
    finally:
        producer.close()


def fulfilled(order_id: str) -> bytes:
    return m.order_fulfilled(order_id, quantity=1)


def scenario() -> list[Letter]:
    """Dead letters of several codes over three days, on both partitions."""
    letters = []
    for index in range(24):
        partition = index % PARTITIONS
        order_id = f"O-{index}"
        at = NOW - timedelta(hours=72) + index * 3 * HOUR
        code = ("not_found", "invalid_json", "quantity_exceeded")[index % 3]
        value = b"{broken json" if code == "invalid_json" else fulfilled(order_id)
        letters.append(Letter(partition, order_id.encode(), value, code, at))
    return letters


def read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1500
    )
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return list(consumer)
    finally:
        consumer.close()


def test_filters_select_by_code_time_key_and_cloud_event(kafka_bootstrap: str, topic: str) -> None:
    letters = scenario()
    put(kafka_bootstrap, topic, letters)

    def keys(selection: DeadLetterFilter) -> set[bytes | None]:
        page = list_page(kafka_bootstrap, topic, selection, limit=100)
        return {letter.key for letter in page.letters}

    def expected(check: Any) -> set[bytes | None]:
        return {letter.key for letter in letters if check(letter)}

    assert keys(DeadLetterFilter()) == expected(lambda _: True)
    assert keys(DeadLetterFilter(codes=frozenset({"not_found"}))) == expected(
        lambda letter: letter.code == "not_found"
    )
    both = frozenset({"not_found", "quantity_exceeded"})
    assert keys(DeadLetterFilter(codes=both)) == expected(lambda letter: letter.code in both)
    since, until = NOW - 24 * HOUR, NOW - 6 * HOUR
    assert keys(DeadLetterFilter(since=since)) == expected(lambda letter: letter.at >= since)
    window = DeadLetterFilter(since=since, until=until, codes=frozenset({"not_found"}))
    assert keys(window) == expected(
        lambda letter: since <= letter.at < until and letter.code == "not_found"
    )
    assert keys(DeadLetterFilter(since=NOW + HOUR)) == set()
    assert keys(DeadLetterFilter(keys=frozenset({b"O-4", b"O-7"}))) == {b"O-4", b"O-7"}
    # Body filters parse the original only then, and garbage never matches.
    assert keys(DeadLetterFilter(types=frozenset({"order.fulfilled"}))) == expected(
        lambda letter: letter.code != "invalid_json"
    )
    event_id = orjson.loads(letters[3].value)["id"]
    assert keys(DeadLetterFilter(ids=frozenset({event_id}))) == {b"O-3"}


def test_pages_are_disjoint_complete_and_ordered_by_time(
    kafka_bootstrap: str, topic: str, cli: Any
) -> None:
    letters = scenario()
    put(kafka_bootstrap, topic, letters)
    for order in ("oldest", "newest"):
        seen: list[dict[str, Any]] = []
        cursor: list[str] = []
        for _ in range(10):
            code, out = cli(
                "dlq", "list", topic, "--limit", "5", "--order", order, "--json", *cursor
            )
            assert code == 0
            page = json.loads(out)
            seen.extend(page["dead_letters"])
            if page["next"] is None:
                break
            ((flag, positions),) = page["next"].items()
            cursor = [f"--{flag}", positions]
        positions = [(d["partition"], d["offset"]) for d in seen]
        assert len(positions) == len(set(positions)) == len(letters)
        times = [d["time"] for d in seen]
        assert times == sorted(times, reverse=order == "newest")
    # A filter and a cursor together: the not_found ones, three at a time.
    code, first = cli(
        "dlq", "list", topic, "--code", "not_found", "--limit", "3", "--order", "oldest", "--json"
    )
    page = json.loads(first)
    code, second = cli(
        "dlq",
        "list",
        topic,
        "--code",
        "not_found",
        "--limit",
        "100",
        "--order",
        "oldest",
        "--json",
        "--after",
        page["next"]["after"],
    )
    rest = json.loads(second)
    assert rest["next"] is None
    both = [d["key"] for d in page["dead_letters"] + rest["dead_letters"]]
    assert both == [
        letter.key.decode() for letter in letters if letter.code == "not_found" and letter.key
    ]


def test_the_table_shows_the_newest_page_and_how_to_get_the_next(
    kafka_bootstrap: str, topic: str, cli: Any
) -> None:
    put(kafka_bootstrap, topic, scenario())
    code, out = cli("dlq", "list", topic, "--limit", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("TIME")
    assert "O-23" in lines[1] and "O-22" in lines[2]
    assert "--before 0:11,1:11" in lines[-1]


def test_count_in_all_and_per_code(kafka_bootstrap: str, topic: str, cli: Any) -> None:
    put(kafka_bootstrap, topic, scenario())
    assert count(kafka_bootstrap, topic) == {
        "not_found": 8,
        "invalid_json": 8,
        "quantity_exceeded": 8,
    }
    code, out = cli("dlq", "list", topic, "--count", "--since", "24h", "--json")
    assert code == 0
    # Letters 17..23 fall in the last 24 hours (one every three hours from 72 hours ago;
    # 16 is exactly 24 hours older than NOW, a little more than that when the command runs).
    assert json.loads(out) == {
        "topic": topic,
        "total": 7,
        "by_code": {"not_found": 2, "invalid_json": 2, "quantity_exceeded": 3},
    }
    code, out = cli("dlq", "list", topic, "--count", "--code", "invalid_json")
    assert out.splitlines()[0] == f"8 dead letters of {topic} match"


def test_replay_by_filter_sends_the_originals_and_skips_what_cannot_be_resent(
    kafka_bootstrap: str, topic: str, cli: Any
) -> None:
    recent = NOW - HOUR
    good = [
        Letter(i % PARTITIONS, f"R-{i}".encode(), fulfilled(f"R-{i}"), "not_found", recent)
        for i in range(7)
    ]
    put(
        kafka_bootstrap,
        topic,
        [
            *good,
            Letter(0, b"T-1", fulfilled("T-1")[:40], "not_found", recent, truncated=True),
            Letter(1, b"G-1", b"{garbage", "not_found", recent),
            Letter(0, b"OLD", fulfilled("OLD"), "not_found", NOW - 48 * HOUR),
            Letter(1, b"Q-1", fulfilled("Q-1"), "quantity_exceeded", recent),
        ],
    )
    code, out = cli("dlq", "replay", topic, "--code", "not_found", "--since", "2h", "--dry-run")
    assert code == 0
    assert out.count("would replay") == 8  # seven lines and the summary
    assert "would skip" in out and "truncated" in out and "not a JSON object" in out
    assert "dry run: would replay 7, skip 2" in out
    assert read_all(kafka_bootstrap, topic) == []  # a dry run sends nothing

    code, out = cli("dlq", "replay", topic, "--code", "not_found", "--since", "2h")
    assert code == 0, out
    assert "sent 7/7" in out
    assert f"replayed 7 of 7 (7 to {topic}); skipped 2" in out
    sent = read_all(kafka_bootstrap, topic)
    assert sorted((r.key, r.value) for r in sent) == sorted((g.key, g.value) for g in good)


def test_replay_needs_a_filter_and_a_limit_takes_the_oldest(
    kafka_bootstrap: str, topic: str, cli: Any
) -> None:
    letters = scenario()
    put(kafka_bootstrap, topic, letters)
    code, _ = cli("dlq", "replay", topic)
    assert code == 2
    plan = plan_replay(
        kafka_bootstrap, topic, DeadLetterFilter(codes=frozenset({"not_found"})), limit=3
    )
    assert [p.key for p in plan.selected] == [b"O-0", b"O-3", b"O-6"]
    progress: list[int] = []
    result = replay(
        kafka_bootstrap, plan, batch_size=2, progress=lambda r, total: progress.append(r.sent)
    )
    assert result.ok and result.sent == 3
    assert progress == [2, 3]


def test_the_single_replay_by_position_still_works(
    kafka_bootstrap: str, topic: str, cli: Any
) -> None:
    value = fulfilled("S-1")
    [(partition, offset)] = put(
        kafka_bootstrap, topic, [Letter(1, b"S-1", value, "not_found", NOW)]
    )
    code, out = cli("dlq", "replay", topic, "--partition", str(partition), "--offset", str(offset))
    assert code == 0 and f"to {topic}" in out
    # The single replay waits for the broker's ack: the original is there when it returns.
    assert [(r.key, r.value) for r in read_all(kafka_bootstrap, topic)] == [(b"S-1", value)]


def test_a_replay_that_fails_mid_way_says_what_was_sent(
    kafka_bootstrap: str, topic: str, cli: Any
) -> None:
    letters = [
        Letter(0, f"F-{i}".encode(), fulfilled(f"F-{i}"), "not_found", NOW - HOUR) for i in range(5)
    ]
    put(kafka_bootstrap, topic, letters)
    plan = plan_replay(kafka_bootstrap, topic, DeadLetterFilter(codes=frozenset({"not_found"})))
    assert [p.key for p in plan.selected] == [letter.key for letter in letters]
    # The third one's topic is refused by the client (as a deleted or misnamed topic would
    # be by the broker): the first batch of two is sent, then the replay stops.
    broken = replace(plan.selected[2], original_topic="no such topic!")
    plan = replace(plan, selected=[*plan.selected[:2], broken, *plan.selected[3:]])
    result = replay(kafka_bootstrap, plan, batch_size=2)
    assert not result.ok
    assert result.sent == 2
    assert result.error is not None and "no such topic!" in result.error
    assert sorted(r.key for r in read_all(kafka_bootstrap, topic)) == [b"F-0", b"F-1"]


def test_a_dead_letter_whose_header_names_another_topic_is_not_replayed(
    kafka_bootstrap: str, topic: str, cli: Any
) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(
        dlq(topic),
        key=b"W-1",
        value=fulfilled("W-1"),
        partition=0,
        headers=[("x-dlq-error-code", b"not_found"), ("x-original-topic", b"oms.orders.v1")],
    ).get(10)
    producer.close()
    code, out = cli("dlq", "replay", topic, "--all")
    assert code == 0
    assert "is not" in out and "replayed 0 of 0" in out
