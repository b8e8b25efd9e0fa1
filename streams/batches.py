"""What happens to a batch once read: handled with retries, split until the culprits are
alone, and its dead letters published.

Why apart from the agent (streams.app): this is the runtime's whole failure policy
(:func:`handle` and :func:`publish_dead_letters`), which only needs a handler, records and
a topic to send to, not the faust app around them. Its ``hold`` callbacks tell the
transport (streams.transport) that a batch is being retried, so a stop does not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from faust.types import TopicT

from streams.records import HANDLER_FAILED, BatchHandler, DeadLetter, InboundRecord, dlq_message

_log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 30.0

Transient = Callable[[BaseException], bool]
"""Whether a handler's exception says a resource is unavailable (retry until it is back)
rather than that the records are bad (split the batch, dead-letter the culprits)."""


class DeadLetterPublicationFailed(RuntimeError):
    """Dead letters could not be published within the configured attempts."""


def no_transient_errors(error: BaseException) -> bool:
    return False


async def handle(
    handler: BatchHandler,
    records: Sequence[InboundRecord],
    *,
    attempts: int,
    backoff_s: float,
    transient: Transient,
    hold: Callable[[], None],
) -> Sequence[DeadLetter]:
    """The handler's dead letters for ``records``, each record applied once.

    Why the split is here and not in a handler: a handler that raises has failed as a
    whole (the inbound one commits a batch in one transaction, so nothing of it stayed),
    and only this loop sees every handler's exceptions. Halving until a record fails alone
    costs about 2 log2(n) extra calls for one culprit and applies every other record once
    (handlers dedupe by message id anyway); the left half goes first, which keeps the order
    of each partition for the records that pass.
    """
    error = await _attempt(
        handler, records, attempts=attempts, backoff_s=backoff_s, transient=transient, hold=hold
    )
    if not isinstance(error, BaseException):
        return error
    if len(records) == 1:
        return [DeadLetter(records[0], f"{type(error).__name__}: {error}", HANDLER_FAILED)]
    middle = len(records) // 2
    _log.warning(
        "splitting a failing batch of %d records from %s in two", len(records), records[0].topic
    )
    # Halves get one attempt each: the whole batch already had its retries.
    first = await handle(
        handler, records[:middle], attempts=1, backoff_s=backoff_s, transient=transient, hold=hold
    )
    rest = await handle(
        handler, records[middle:], attempts=1, backoff_s=backoff_s, transient=transient, hold=hold
    )
    return [*first, *rest]


async def _attempt(
    handler: BatchHandler,
    records: Sequence[InboundRecord],
    *,
    attempts: int,
    backoff_s: float,
    transient: Transient,
    hold: Callable[[], None],
) -> Sequence[DeadLetter] | Exception:
    """The handler's result, or its last exception after ``attempts`` failed calls.

    Transient failures do not count: they are retried until they pass (a stop of the
    worker cancels the sleep), since dead-lettering good records for an outage would lose
    them for everyone who does not replay the DLQ.
    """
    failed = 0
    delay = backoff_s
    while True:
        try:
            return await handler(records)
        except Exception as exc:  # the agent must outlive any handler bug
            hold()
            first, last = records[0], records[-1]
            outage = transient(exc)
            if not outage:
                failed += 1
            _log.exception(
                "handler failed on %s (%d records, offsets %s:%s..%s:%s), %s",
                first.topic,
                len(records),
                first.partition,
                first.offset,
                last.partition,
                last.offset,
                "a resource is unavailable: retrying until it is back"
                if outage
                else f"attempt {failed}/{attempts}",
            )
            if failed >= attempts:
                return exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)


async def publish_dead_letters(
    topic: TopicT,
    letters: Sequence[DeadLetter],
    *,
    attempts: int,
    backoff_s: float,
    hold: Callable[[], None],
) -> None:
    """Publish ``letters``, or raise DeadLetterPublicationFailed after ``attempts`` tries.

    Bounded: a dead letter the broker refuses for good (a key too big for it, a DLQ topic
    that is gone) would otherwise hold the topic forever with nothing but a log line. A
    retry after a partial failure may duplicate some; DLQ readers must tolerate that.
    """
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            pending = []
            for letter in letters:
                value, headers = dlq_message(letter)
                # force=True: publish now, not attached to the current event's commit.
                pending.append(
                    await topic.send(
                        key=letter.record.key, value=value, headers=headers, force=True
                    )
                )
            await asyncio.gather(*pending)
            return
        except Exception as exc:
            hold()
            _log.exception(
                "could not publish %d dead letters to %s (attempt %d/%d)",
                len(letters),
                topic.get_topic_name(),
                attempt,
                attempts,
            )
            if attempt == attempts:
                first = letters[0].record
                raise DeadLetterPublicationFailed(
                    f"could not publish {len(letters)} dead letter(s) to "
                    f"{topic.get_topic_name()} in {attempts} attempts (first from "
                    f"{first.topic}:{first.partition} at offset {first.offset}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)
    raise AssertionError("unreachable")  # the last attempt returns or raises
