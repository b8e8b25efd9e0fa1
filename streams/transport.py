"""The faust App, consumer and transport subclasses our apps run on (:class:`TansuApp`).

faust has no setting for what these change, so they subclass its aiokafka driver: the
consumer's fetch wait (Tansu holds an empty fetch until it expires), resume offsets sought
after every rebalance, a stop that does not wait for a batch being retried, and failure
hooks told when the worker cannot go on. Apart from the agent (streams.app) because they
are about the broker connection, not about batches.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import faust
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.transports import TransportT

from streams.resume import follow_relay_epoch

_log = logging.getLogger(__name__)

FailureHook = Callable[[str], None]
"""Told why the worker cannot go on; it must stop the process (see streams.worker)."""

ResumeOffsets = Callable[[frozenset[tuple[str, int]]], Awaitable[Mapping[tuple[str, int], int]]]
"""Given the assigned (topic, partition)s, the offsets to resume some of them at instead
of the group's committed ones."""


class TansuApp(faust.App):
    """A faust App whose consumer honours our fetch wait and our resume offsets."""

    def __init__(
        self,
        app_id: str,
        *,
        fetch_max_wait_ms: int,
        resume: ResumeOffsets | None,
        **options: Any,
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.resume_offsets = resume
        self.failure_hooks: list[FailureHook] = []
        self.failure: str | None = None
        self.holding = _Holding()
        super().__init__(app_id, **options)
        # A broker that lost its memory serves new logs under the same names.
        follow_relay_epoch(self, resume)

    def fail(self, reason: str) -> None:
        """The worker cannot go on without skipping records: say so, loudly, once."""
        if self.failure is not None:
            return
        self.failure = reason
        _log.critical("worker failed, its batch is not acked: %s", reason)
        for hook in self.failure_hooks:
            try:
                hook(reason)
            except Exception:
                _log.exception("a failure hook failed")

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)


class _Holding:
    """The agents holding a batch that failed at least once and is not acked yet."""

    def __init__(self) -> None:
        self._topics: set[str] = set()
        self.any = asyncio.Event()

    def add(self, topic: str) -> None:
        self._topics.add(topic)
        self.any.set()

    def discard(self, topic: str) -> None:
        self._topics.discard(topic)
        if not self._topics:
            self.any.clear()


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust hard-codes fetch_max_wait_ms=1500 and has no setting for it. Tansu holds a
        # fetch until then when a partition has nothing new, so a message waited up to
        # ~750 ms; ours (10-50 ms) bounds that latency. aiokafka reads this attribute when
        # the consumer starts, which is after this returns.
        consumer._fetch_max_wait_ms = cast(TansuApp, self.app).fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    async def wait_empty(self) -> None:
        # faust's loop, with one exit more. Before a stop or a rebalance, faust waits until
        # every event taken is acked; a batch being retried (an outage, a DLQ refusing) may
        # not be acked for minutes or ever, which made the worker deaf to SIGTERM. Only
        # acked offsets are committed, so such a batch is simply read again later.
        holding = cast(TansuApp, self.app).holding
        while not self.should_stop and self._unacked_messages:
            if holding.any.is_set():
                _log.warning("not waiting for a batch being retried: it stays unacked")
                break
            gc.collect()  # unacked messages are weakly held: drop those nobody holds
            await self.commit()
            if not self._unacked_messages:
                break
            await self._wait_for_ack(timeout=1)
            self._clean_unacked_messages()
        await self.commit_and_end_transactions()

    async def seek_to_committed(self) -> Mapping[TP, int]:
        # faust seeks every assigned partition to its committed offset once a rebalance
        # is done (and again whenever it fetched while paused); the caller's offsets then
        # override those, and go into faust's own read and committed offsets with them.
        committed = dict(await super().seek_to_committed())
        resume = cast(TansuApp, self.app).resume_offsets
        if resume is None or not committed:
            return committed
        assigned = {(tp.topic, tp.partition): tp for tp in committed}
        try:
            offsets = await resume(frozenset(assigned))
        except Exception:  # the committed offsets are a safe fallback: never crash on it
            _log.exception("could not tell where to resume; the committed offsets apply")
            return committed
        # The resume call awaits PostgreSQL and the broker: the group may have rebalanced
        # meanwhile, and a seek on a partition no longer ours fails. The next rebalance
        # seeks again.
        current = self.assignment()
        seeks = {
            tp: offset
            for pair, offset in offsets.items()
            if (tp := assigned.get(pair)) is not None and tp in current
        }
        if seeks:
            try:
                await self._thread.seek_wait(seeks)
            except IllegalStateError as changed:
                _log.warning("the assignment changed while resuming: %r", changed)
                return committed
            committed.update(seeks)
        return committed

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
