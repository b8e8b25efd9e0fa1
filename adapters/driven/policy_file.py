"""The operators' policy file (``OMS_POLICY_FILE``), reloaded when it changes.

The file is checked on use: each read of the policy compares the file's modification
time and size with those of the text in force (one ``stat``, microseconds next to a
command's transaction), and its content too while it is under two seconds old. Unlike a
timer this needs no thread in every API worker, relay and stream process, and the very
next decision after an edit uses the new file, so the version it records is the one the
operator just saved. A file that fails to parse keeps the previous policy and is logged
once per change; at start there is no previous policy, so a bad file stops the service
(:class:`PolicyFile` raises PolicyFileError).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from domain.policy import PolicyBook
from domain.policy_file import PolicyFileError, parse_policy

_log = logging.getLogger(__name__)

_SAME_TICK_NS = 2_000_000_000


def load_policy_file(path: Path) -> PolicyBook:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(str(path), "(file)", exc.strerror or str(exc)) from None
    return parse_policy(text, str(path))


class PolicyFile:
    """A callable giving the policy in force; pass it to ReturnsService(policy_source=...)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._text = self._read()
        if self._text is None:
            load_policy_file(path)  # raises, naming why the file cannot be read
        self._book: PolicyBook = parse_policy(self._text or "", str(path))
        _log.info("policy %s in force from %s", self._book.version, path)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError:
            return None

    def __call__(self) -> PolicyBook:
        stamp = self._stat()
        if stamp is None:
            # A file briefly missing (an editor's save by rename) keeps the policy in force.
            return self._book
        # Timestamps tick coarsely (a few ms on Linux): two saves of the same size within
        # one tick leave the stamp alone, so a file saved just now is compared by content.
        recent = time.time_ns() - stamp[0] < _SAME_TICK_NS
        if stamp == self._stamp and not recent:
            return self._book
        with self._lock:
            text = self._read()
            if text is None or text == self._text:
                self._stamp = stamp
                return self._book
            self._stamp, self._text = stamp, text
            try:
                book = parse_policy(text, str(self.path))
            except PolicyFileError as exc:
                _log.error(
                    "policy file not reloaded, %s stays in force: %s", self._book.version, exc
                )
            else:
                if book.version != self._book.version:
                    _log.info("policy %s in force from %s", book.version, self.path)
                self._book = book
        return self._book
