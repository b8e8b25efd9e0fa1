"""Read-ahead batching of an agent's stream (:class:`Feed`).

Apart from the agent that uses it (streams.app) because it is the one piece of the runtime
about timing alone: how records are gathered into batches, not what happens to them.
"""

from __future__ import annotations

import asyncio
from collections import deque

from faust.types import EventT, StreamT

_IDLE_S = 0.002
"""A gap this long between two records means the fetch that brought them is drained."""


class Feed:
    """The stream's events, read ahead while the previous batch is being applied.

    faust's ``take(n, within)`` waits its whole window after every batch and stops
    reading while the caller handles one, so a record waited for the window, then for the
    batch before it, then for its own. Here a reader task keeps buffering (up to
    ``max_pending``, then it stops reading and faust's queues push back on the fetcher),
    and a batch goes out as soon as the handler is free and the current fetch has landed:
    one record at low rates, bigger batches by themselves when the handler is the
    bottleneck. One reader and one handler per topic keep the order of every partition.
    """

    def __init__(self, stream: StreamT[bytes], *, max_pending: int) -> None:
        self._stream = stream
        self._max_pending = max_pending
        self._pending: deque[EventT[bytes]] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def read(self) -> None:
        try:
            async for event in self._stream.events():
                self._pending.append(event)
                self._arrived.set()
                if len(self._pending) >= self._max_pending:
                    self._room.clear()
                    await self._room.wait()
        finally:
            self._arrived.set()  # wake the handler side, which then sees the reader ended

    async def next_batch(
        self, size: int, *, within_s: float, reader: asyncio.Future[None]
    ) -> list[EventT[bytes]]:
        """The next batch, in arrival order; empty once the stream has ended."""
        pending = self._pending
        while not pending:
            self._arrived.clear()
            await self._arrived.wait()
            if reader.done():
                reader.result()  # the reader's exception, if it crashed
                return []  # the stream ended: the agent is stopping
        deadline = asyncio.get_running_loop().time() + within_s
        while len(pending) < size:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(_IDLE_S, remaining))
            except TimeoutError:
                break  # nothing more came: the fetch is drained
        batch = [pending.popleft() for _ in range(min(size, len(pending)))]
        if len(pending) < self._max_pending:
            self._room.set()
        return batch
