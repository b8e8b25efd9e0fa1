"""``rma policy``: the return policy in force (``OMS_POLICY_FILE``) and checks of candidates."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adapters.settings import Settings


def add_policy_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="the return policy in force, and checks of a new one")
    actions = policy.add_subparsers(dest="policy_action", required=True)
    actions.add_parser("show", help="print the policy in force (OMS_POLICY_FILE or built-in)")
    check = actions.add_parser("check", help="validate a policy file without putting it in force")
    check.add_argument("file", type=Path)


def run_policy(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.driven.policy_file import load_policy_file
    from domain.policy import PolicyBook
    from domain.policy_file import PolicyFileError, describe_policy

    path = args.file if args.policy_action == "check" else settings.policy_file
    try:
        book = PolicyBook() if path is None else load_policy_file(path)
    except PolicyFileError as error:
        print(f"invalid policy: {error}", file=sys.stderr)
        return 1
    if args.policy_action == "check":
        print(f"{path}: valid, version {book.version}")
        return 0
    print(f"# from {path or 'the built-in defaults'}")
    print(json.dumps(describe_policy(book), indent=2))
    return 0
