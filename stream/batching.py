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

When a rebalance revokes partitions, ``revoke_handler`` runs first, before Faust's own handling
and while this member still owns them and may commit: the service takes its last checkpoint
there and stops writing (the group hands the partitions over only after this returns).

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
RevokeHandler = Callable[[set[TP]], Awaitable[None]]


class BatchConsumer(_faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a batch path for ``batch_topics`` (see the module docstring)."""

    batch_topics: frozenset[str] = frozenset()
    batch_handler: BatchHandler | None = None
    revoke_handler: RevokeHandler | None = None

    async def _drain_messages(self, fetcher) -> None:  # noqa: C901 - one loop, as Faust's own
        callback = self.callback
        should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        batch_topics = self.batch_topics
        try:
            while not (should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                # the generation these records belong to: taken right after the fetch, as Faust's
                # own getmany does (a fetch that waited through a rebalance returns records of the
                # new assignment, read from the positions its recovery sought to)
                generation = self.app.consumer_generation_id
                if self.should_stop:
                    continue
                if not records:
                    if self.batch_handler is not None and self.flow_active:
                        await self.batch_handler({})  # nothing fetched: the handler may have records due
                    continue
                if not self.flow_active:
                    # fetched while a rebalance stopped the flow: seek back to the committed offsets
                    # (as Faust's getmany does), so these records come again from the new owner
                    try:
                        await self.perform_seek()
                    except Exception as exc:  # noqa: BLE001 - e.g. a partition revoked meanwhile; recovery seeks again
                        logger.warning("seek to committed offsets while the flow is stopped failed: %r", exc)
                    continue
                batch: dict[TP, list[Any]] = {}
                for tp, recs in records.items():
                    if tp.topic in batch_topics:
                        # never dropped here: the fetch position is already past them (the handler
                        # keeps only partitions still assigned, and pauses what must wait)
                        batch[TP(tp.topic, tp.partition)] = recs
                        continue
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    for rec in recs:  # Faust's per-message path, as in Consumer._drain_messages
                        r_offset = read_offset.get(tp)
                        if r_offset is None or rec.offset >= r_offset:
                            if r_offset and rec.offset - r_offset > 1 and self.app.topics.acks_enabled_for(tp.topic):
                                await self._add_gap(tp, r_offset + 1, rec.offset)
                            await self.wait_first(callback(self._to_message(tp, rec)), self.suspend_flow.wait())
                            read_offset[tp] = rec.offset
                if batch and self.batch_handler is not None:
                    if self.app.consumer_generation_id != generation:
                        continue  # a rebalance began meanwhile: its recovery seeks to the committed offsets
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

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Before Faust handles a revocation (while this member still owns its partitions and may
        commit): let the batch handler's owner make its state durable and commit, then fence it."""
        if self.revoke_handler is not None:
            await self.revoke_handler(set(revoked))
        await super().on_partitions_revoked(revoked)

    def verify_event_path(self, now: float, tp: TP) -> None:
        if tp.topic in self.batch_topics:
            return None
        return super().verify_event_path(now, tp)


def install(app, topics, handler: BatchHandler, on_revoke: RevokeHandler | None = None) -> None:
    """Make ``app`` use :class:`BatchConsumer`, delivering ``topics`` to ``handler`` in batches,
    and calling ``on_revoke`` first thing when partitions are revoked. Call before anything
    touches ``app.consumer``."""
    attrs = {"batch_topics": frozenset(topics), "batch_handler": staticmethod(handler),
             "revoke_handler": staticmethod(on_revoke) if on_revoke is not None else None}
    cls = type("AppBatchConsumer", (BatchConsumer,), attrs)
    app.transport.Consumer = cls
