"""``rma dlq``: list, count and replay dead letters."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from adapters.settings import Settings

if TYPE_CHECKING:
    from adapters.driven.kafka.deadletters.filters import DeadLetterFilter


def add_dlq_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from datetime import datetime

    from adapters.driven.kafka.deadletters.filters import parse_moment, parse_positions

    def moment(text: str) -> datetime:
        try:
            return parse_moment(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
        return int(text)

    def positions(text: str) -> dict[int, int]:
        try:
            return parse_positions(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    dead = sub.add_parser("dlq", help="list, count or replay the dead letters of a topic")
    actions = dead.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="matching dead letters, a page at a time")
    replay = actions.add_parser(
        "replay", help="send matching dead letters back to their topic (their ids kept)"
    )
    for action in (listing, replay):
        action.add_argument("topic", help="the topic they were refused on, e.g. oms.orders.v1")
        found = action.add_argument_group("filters (all given must hold)")
        found.add_argument(
            "--code", action="append", default=[], help="x-dlq-error-code (repeatable: any of)"
        )
        found.add_argument(
            "--since",
            type=moment,
            help="dead-lettered at or after: RFC 3339, a day, or back from now (30m, 1h, 2d)",
        )
        found.add_argument("--until", type=moment, help="dead-lettered before (same forms)")
        found.add_argument("--key", action="append", default=[], help="message key (repeatable)")
        found.add_argument(
            "--id", action="append", default=[], help="CloudEvents id of the original"
        )
        found.add_argument(
            "--type", action="append", default=[], help="CloudEvents type of the original"
        )
        found.add_argument(
            "--after", type=positions, help="DLQ offsets above P:O[,P:O...] (a page cursor)"
        )
        found.add_argument(
            "--before", type=positions, help="DLQ offsets below P:O[,P:O...] (a page cursor)"
        )
        action.add_argument("--json", action="store_true", help="JSON for machines")
    listing.add_argument("--partition", type=int, help="only this DLQ partition")
    listing.add_argument("--limit", type=positive, default=50, help="page size (default 50)")
    listing.add_argument(
        "--order",
        choices=["newest", "oldest"],
        default="newest",
        help="newest first (default) or oldest first, merged across partitions by time",
    )
    listing.add_argument(
        "--count", action="store_true", help="print how many match, in all and per code"
    )
    replay.add_argument(
        "--partition",
        type=int,
        help="only this DLQ partition; with --offset, the one dead letter's (default 0)",
    )
    replay.add_argument("--offset", type=int, help="replay the one dead letter at this offset")
    replay.add_argument("--limit", type=positive, help="replay at most the N oldest matching")
    replay.add_argument("--all", action="store_true", help="replay every one (no filter)")
    replay.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed and skipped"
    )


def run_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.driven.kafka.deadletters.filters import DeadLetterFilter
    from adapters.driving.stack import kafka

    selection = DeadLetterFilter(
        codes=frozenset(args.code),
        since=args.since,
        until=args.until,
        keys=frozenset(key.encode() for key in args.key),
        ids=frozenset(args.id),
        types=frozenset(args.type),
        partitions=frozenset()
        if args.partition is None or getattr(args, "offset", None) is not None
        else frozenset({args.partition}),
        after=args.after or {},
        before=args.before or {},
    )
    with kafka(settings) as bootstrap:
        if args.action == "list":
            return _dlq_list(bootstrap, args, selection)
        return _dlq_replay(bootstrap, args, selection)


def _dlq_list(bootstrap: str, args: argparse.Namespace, selection: DeadLetterFilter) -> int:
    import json

    from adapters.driven.kafka.deadletters.reading import count, describe, list_page

    if args.count:
        by_code = count(bootstrap, args.topic, selection)
        total = sum(by_code.values())
        if args.json:
            print(json.dumps({"topic": args.topic, "total": total, "by_code": by_code}))
        else:
            print(f"{total} dead letters of {args.topic} match")
            for code, n in sorted(by_code.items(), key=lambda item: (-item[1], item[0])):
                print(f"  {n:>8}  {code}")
        return 0
    page = list_page(
        bootstrap, args.topic, selection, limit=args.limit, newest_first=args.order == "newest"
    )
    if args.json:
        next_page = None
        if page.cursor is not None:
            from adapters.driven.kafka.deadletters.filters import format_positions

            next_page = {"before" if page.newest_first else "after": format_positions(page.cursor)}
        print(
            json.dumps(
                {
                    "topic": args.topic,
                    "order": args.order,
                    "dead_letters": [describe(letter) for letter in page.letters],
                    "next": next_page,
                }
            )
        )
        return 0
    rows = [describe(letter, with_value=False) for letter in page.letters]
    print(f"{'TIME':<24} {'AT':<9} {'CODE':<18} {'KEY':<20} {'TYPE':<18} {'ID':<36} REASON")
    for row in rows:
        flag = " [truncated]" if row["truncated"] else ""
        print(
            f"{row['time'] or '-':<24} {str(row['partition']) + ':' + str(row['offset']):<9} "
            f"{row['code']:<18.18} {row['key'] or '-':<20.20} {row['type'] or '-':<18.18} "
            f"{row['id'] or '-':<36.36} {' '.join(row['reason'].split())[:100]}{flag}"
        )
    order = "newest" if page.newest_first else "oldest"
    print(f"{len(rows)} shown, {order} first", end="")
    print(f"; next page: the same command with {page.cursor_option}" if page.cursor_option else "")
    return 0


def _dlq_replay(bootstrap: str, args: argparse.Namespace, selection: DeadLetterFilter) -> int:
    import json

    from adapters.driven.kafka.deadletters.filters import format_positions
    from adapters.driven.kafka.deadletters.replay import (
        Planned,
        ReplayResult,
        plan_replay,
        replay,
        replay_dead_letter,
    )

    if args.offset is not None:
        partition = args.partition or 0
        try:
            original = replay_dead_letter(bootstrap, args.topic, partition, args.offset)
        except (LookupError, ValueError) as error:
            print(error, file=sys.stderr)
            return 1
        print(f"replayed {args.topic}.dlq[{partition}]@{args.offset} to {original}")
        return 0
    if selection.is_empty() and not args.all:
        print(
            "replay needs a filter (--code, --since, --key, ...), --all, "
            "or --partition P --offset N",
            file=sys.stderr,
        )
        return 2
    plan = plan_replay(bootstrap, args.topic, selection, limit=args.limit)

    def line(planned: Planned) -> str:
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(planned.timestamp_ms / 1000, UTC)
        when_text = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        key = planned.key.decode(errors="replace") if planned.key is not None else "-"
        return (
            f"{planned.partition}:{planned.offset} {when_text} {planned.code} key={key} "
            f"type={planned.event_type or '-'} id={planned.event_id or '-'}"
        )

    def as_json(planned: Planned) -> dict[str, Any]:
        return {
            "partition": planned.partition,
            "offset": planned.offset,
            "code": planned.code,
            "key": planned.key.decode(errors="replace") if planned.key is not None else None,
            "id": planned.event_id,
            "type": planned.event_type,
            "to": planned.original_topic,
            "skip": planned.skip,
        }

    todo, skipped = plan.replayable, plan.skipped
    if args.dry_run:
        if args.json:
            print(
                json.dumps(
                    {
                        "topic": args.topic,
                        "dry_run": True,
                        "plan": [as_json(p) for p in plan.selected],
                    }
                )
            )
            return 0
        for planned in plan.selected:
            if planned.skip is None:
                print(f"would replay {line(planned)} -> {planned.original_topic}")
            else:
                print(f"would skip   {line(planned)}: {planned.skip}")
        print(f"dry run: would replay {len(todo)}, skip {len(skipped)} of {args.topic}.dlq")
        return 0
    out = sys.stderr if args.json else sys.stdout
    for planned in skipped:
        print(f"skip {line(planned)}: {planned.skip}", file=out)
    print(
        f"replaying {len(todo)} dead letters of {args.topic}.dlq ({len(skipped)} skipped)", file=out
    )

    def show(result: ReplayResult, total: int) -> None:
        print(f"  sent {result.sent}/{total}", file=out, flush=True)

    result = replay(bootstrap, plan, progress=show)
    if args.json:
        print(
            json.dumps(
                {
                    "topic": args.topic,
                    "planned": len(todo),
                    "sent": result.sent,
                    "by_topic": dict(result.by_topic),
                    "skipped": [as_json(p) for p in skipped],
                    "failed": [{**as_json(p), "error": why} for p, why in result.failed],
                    "missing": [as_json(p) for p in result.missing],
                    "error": result.error,
                }
            )
        )
    sent_to = ", ".join(f"{n} to {topic}" for topic, n in sorted(result.by_topic.items()))
    print(
        f"replayed {result.sent} of {len(todo)} ({sent_to or 'none sent'}); skipped {len(skipped)}",
        file=out,
    )
    for planned, why in result.failed:
        print(f"FAILED {line(planned)}: {why}", file=out)
    if result.error:
        print(f"STOPPED: {result.error}", file=out)
    if result.missing:
        gone = format_positions({p.partition: p.offset for p in result.missing})
        print(f"MISSING (no longer on the DLQ): {len(result.missing)}, e.g. {gone}", file=out)
    if not result.ok:
        unsent = len(todo) - result.sent
        print(f"{unsent} not sent: fix the cause and run the same command again", file=out)
        return 1
    return 0
