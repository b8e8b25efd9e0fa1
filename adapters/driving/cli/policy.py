"""``rma policy``: the return policy in force (``OMS_POLICY_FILE``) and checks of candidates."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

from adapters.settings import Settings
from domain.policy import PolicyBook


def add_policy_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="the return policy in force, and checks of a new one")
    actions = policy.add_subparsers(dest="policy_action", required=True)
    actions.add_parser("show", help="print the policy in force (OMS_POLICY_FILE or built-in)")
    check = actions.add_parser("check", help="validate a policy file without putting it in force")
    check.add_argument("file", type=Path)
    simulate = actions.add_parser(
        "simulate",
        help="replay recorded return requests against a candidate policy; writes nothing",
    )
    simulate.add_argument("file", type=Path, help="the candidate policy file")
    simulate.add_argument(
        "--since", required=True, type=_day, help="first day of requests (YYYY-MM-DD, UTC)"
    )
    simulate.add_argument("--json", action="store_true", help="one JSON document")
    simulate.add_argument(
        "--details",
        action="store_true",
        help="also list each request the candidate would decide otherwise",
    )


def _day(text: str) -> datetime:
    return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)


def run_policy(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.driven.policy_file import load_policy_file
    from domain.policy_file import PolicyFileError, describe_policy

    path = settings.policy_file if args.policy_action == "show" else args.file
    try:
        book = PolicyBook() if path is None else load_policy_file(path)
    except PolicyFileError as error:
        print(f"invalid policy: {error}", file=sys.stderr)
        return 1
    if args.policy_action == "check":
        print(f"{path}: valid, version {book.version}")
        return 0
    if args.policy_action == "simulate":
        return _simulate(settings, book, args.since, as_json=args.json, details=args.details)
    print(f"# from {path or 'the built-in defaults'}")
    print(json.dumps(describe_policy(book), indent=2))
    return 0


def _simulate(
    settings: Settings,
    candidate: PolicyBook,
    since: datetime,
    *,
    as_json: bool,
    details: bool = False,
) -> int:
    from adapters.driven.eventstore import create_service
    from adapters.driven.policy_simulation import simulate
    from adapters.driving.stack import postgres

    with postgres(settings) as url:
        service = create_service(url, pool_size=2)
        try:
            report = simulate(service, candidate, since).as_json(details=details)
        finally:
            service.close()
    if as_json:
        print(json.dumps(report))
        return 0
    print(f"requests since {since.date()}: {report['requests']} (candidate {candidate.version})")
    for name, t in report["by_category"].items():
        print(
            f"  {name}: {t['lines']} lines, accepted {t['accepted_before']} -> "
            f"{t['accepted_after']}, refused {t['refused_before']} -> {t['refused_after']}, "
            f"fees {t['fees_before']} -> {t['fees_after']}, "
            f"refunds {t['refunds_before']} -> {t['refunds_after']}"
        )
    for when in ("before", "after"):
        outcomes = ", ".join(f"{k} {v}" for k, v in report["outcomes"][when].items())
        holds = ", ".join(f"{k} {v}" for k, v in report["holds"][when].items()) or "none"
        print(f"  {when}: {outcomes or 'no requests'}; held by rule: {holds}")
    for c in report["changes"]:
        print(
            f"{c['return_id']} line {c['line_no']} ({c['category']}): {c['before']} -> "
            f"{c['after']}, fee {c['fee_before']} -> {c['fee_after']}"
        )
    for r in report.get("request_changes", []):
        rules_before = ",".join(r["rules_before"]) or "-"
        rules_after = ",".join(r["rules_after"]) or "-"
        print(
            f"request {r['return_id']} (order {r['order_number']}, {r['decided_at']}): "
            f"{r['before']} [{rules_before}] -> {r['after']} [{rules_after}], refund "
            f"{r['refund_before']} -> {r['refund_after']} {r['currency']}, fees "
            f"{r['fees_before']} -> {r['fees_after']}"
        )
    return 0
