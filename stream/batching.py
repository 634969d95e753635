"""Batch-native consumption under Faust: the one adapter to Faust's consumer internals.

Faust delivers every message on its own: a ``ConsumerMessage``, an ``Event``, a queue put and
get, an ack and an offset-tracking entry per message (tens of µs in Python: the whole CPU at
100k events/s). For the topics named in ``batch_topics`` this consumer skips all of that: each
fetch (``_wait_next_records``, Faust's own getmany over the partitions it has not paused) hands
the raw aiokafka records of those topics, grouped by partition, to one coroutine,
``batch_handler`` (with an empty mapping when a fetch returned nothing, about once a second, so
that records its owner holds back can become due). Every other topic (table changelogs during recovery, the second-SIM join's
internal topics) still goes through Faust's per-message path, unchanged.

Faust keeps what it is good at: group membership, partition assignment (the inputs stay
subscribed through an agent, so tables stay co-partitioned with them), table recovery,
rebalance, the web server. Offsets of the batch topics are never acked message by message:
the handler's owner commits offset ranges itself with :meth:`BatchConsumer.commit_offsets`, after
the state they produced is durable (see the checkpoint order in ``stream/service.py``).

Faust's stall detector (``verify_event_path``) watches the per-message stream and commit
bookkeeping, which the batch topics no longer use: it would log false "Stream has not started
processing" / "Has not committed" errors forever, so it is skipped for them (the service reports
its own stalls at ``/healthz``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Mapping

from faust.transport.drivers import aiokafka as _faust_aiokafka
from faust.types import TP

__all__ = ["BatchConsumer", "install"]

logger = logging.getLogger(__name__)

BatchHandler = Callable[[dict[TP, list[Any]]], Awaitable[None]]


class BatchConsumer(_faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a batch path for ``batch_topics`` (see the module docstring)."""

    batch_topics: frozenset[str] = frozenset()
    batch_handler: BatchHandler | None = None

    async def _drain_messages(self, fetcher) -> None:  # noqa: C901 - one loop, as Faust's own
        callback = self.callback
        should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        batch_topics = self.batch_topics
        try:
            while not (should_stop() or fetcher_should_stop()):
                generation = self.app.consumer_generation_id
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if self.should_stop:
                    continue
                if not records:
                    if self.batch_handler is not None and self.flow_active:
                        await self.batch_handler({})  # nothing fetched: the handler may have records due
                    continue
                if not self.flow_active or self.app.consumer_generation_id != generation:
                    # fetched across a rebalance: Faust seeks the new assignment to its committed
                    # offsets, so these records come again (as Faust's own getmany drops them)
                    if not self.flow_active:
                        try:
                            await self.perform_seek()
                        except Exception as exc:  # noqa: BLE001 - e.g. a partition revoked meanwhile; recovery seeks again
                            logger.warning("seek to committed offsets while the flow is stopped failed: %r", exc)
                    continue
                batch: dict[TP, list[Any]] = {}
                for tp, recs in records.items():
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    if tp.topic in batch_topics:
                        batch[TP(tp.topic, tp.partition)] = recs
                        continue
                    for rec in recs:  # Faust's per-message path, as in Consumer._drain_messages
                        r_offset = read_offset.get(tp)
                        if r_offset is None or rec.offset >= r_offset:
                            if r_offset and rec.offset - r_offset > 1 and self.app.topics.acks_enabled_for(tp.topic):
                                await self._add_gap(tp, r_offset + 1, rec.offset)
                            await self.wait_first(callback(self._to_message(tp, rec)), self.suspend_flow.wait())
                            read_offset[tp] = rec.offset
                if batch and self.batch_handler is not None:
                    await self.batch_handler(batch)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def commit_offsets(self, offsets: Mapping[TP, int]) -> bool:
        """Commit ``offsets`` (next offset to read, per partition) of batch topics: partitions no
        longer assigned are left out (their new owner replays from the last commit)."""
        if not offsets:
            return False
        await self.maybe_wait_for_commit_to_finish()
        assignment = self.assignment()
        mine = {tp: off for tp, off in offsets.items() if tp in assignment}
        if not mine:
            return False
        ok = await self._commit(mine)
        if ok:
            self._committed_offset.update(mine)
        return ok

    def verify_event_path(self, now: float, tp: TP) -> None:
        if tp.topic in self.batch_topics:
            return None
        return super().verify_event_path(now, tp)


def install(app, topics, handler: BatchHandler) -> None:
    """Make ``app`` use :class:`BatchConsumer`, delivering ``topics`` to ``handler`` in batches.
    Call before anything touches ``app.consumer``."""
    cls = type("AppBatchConsumer", (BatchConsumer,), {"batch_topics": frozenset(topics), "batch_handler": staticmethod(handler)})
    app.transport.Consumer = cls
