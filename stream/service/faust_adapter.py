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
the state they produced is durable (see the checkpoint order in ``stream/service/churn.py``).

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
import struct
import weakref
from collections.abc import Awaitable, Callable, Mapping
from contextlib import contextmanager
from typing import Any

from aiokafka.consumer import fetcher as _aiokafka_fetcher
from faust.transport.drivers import aiokafka as _faust_aiokafka
from faust.types import TP

__all__ = [
    "BatchConsumer",
    "raw_topic",
    "raw_table",
    "install",
    "Producer",
    "PART",
    "put_many",
    "by_partition",
    "mark_persisted",
    "owned_items",
    "committed_offsets",
]

logger = logging.getLogger(__name__)

BatchHandler = Callable[[dict[TP, list[Any]]], Awaitable[None]]
RevokeHandler = Callable[[set[TP]], Awaitable[None]]


_RAW_RECORD_TOPICS: set[str] = set()  # topics whose fetched records stay aiokafka's own (install)


class _RawPartitionRecords(_aiokafka_fetcher.PartitionRecords):
    """aiokafka's fetched records of one partition. For the topics in ``_RAW_RECORD_TOPICS`` (the
    input topics of the batch path), each record is handed on as aiokafka's own record object
    (``offset``, ``key``, ``value``, ``timestamp``), not copied into a ``ConsumerRecord`` (a
    namedtuple of 11 fields, a headers tuple, the key and value sizes): 1.5 -> 0.5 µs per record
    (500-record batches of 150-byte values), in the consumer thread, which holds the GIL the
    engine needs. Such records have no ``topic``/``partition``: the batch handler gets them
    grouped by partition. Transactions (read-committed), control batches, CRC checks and the
    fetch position record by record (a caller that takes at most N records resumes at the right
    offset) are kept as aiokafka does; other topics are unchanged."""

    def _unpack_records(self):
        if self._tp.topic not in _RAW_RECORD_TOPICS or self._isolation_level != _aiokafka_fetcher.READ_UNCOMMITTED:
            yield from super()._unpack_records()
            return
        records = self._records
        while records.has_next():
            batch = records.next_batch()
            if self._check_crcs and not batch.validate_crc():
                raise _aiokafka_fetcher.Errors.CorruptRecordException(f"Invalid CRC - {self._tp}")
            if batch.is_control_batch:
                self.next_fetch_offset = batch.next_offset
                continue
            recs = list(batch)
            if recs and recs[0].offset < self.next_fetch_offset:  # a compressed set read again: skip the part before
                start = self.next_fetch_offset
                recs = [r for r in recs if r.offset >= start]
            for rec in recs:
                self.next_fetch_offset = rec.offset + 1
                yield rec
            self.next_fetch_offset = batch.next_offset


class _ConsumerThread(_faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the fetch wait of :attr:`BatchConsumer.fetch_max_wait_ms`.

    Faust hard-codes ``fetch_max_wait_ms=1500``. aiokafka sends one fetch at a time per broker,
    and while the handler is still busy with a large fetch (over aiokafka's 100 ms prefetch
    backoff) the next one covers only the partitions it has no records of, typically the quiet
    ones (recharges, profiles); the broker holds that fetch until data arrives on them or the wait
    ends, and the busy partitions are not fetched meanwhile. A worker that fell behind then
    received its input in bursts up to 1.5 s apart (measured with a CPU-bound loop beside the
    worker: p99 produce→alarm at 8,000 events/s 1.79-1.91 s at 1,500 ms, 0.41-0.50 s at 100 ms)."""

    _assigned: tuple[Any, frozenset[TP]] | None = None

    def assignment(self) -> set[TP]:
        """The current assignment as Faust ``TP`` s, converted once per assignment. aiokafka hands
        out the same set object until a rebalance makes a new one, so the conversion (a ``TP`` per
        partition, which Faust did at every call) is kept with that object as its key; callers get
        a copy. Faust's commit asks for it once per offset committed and the service several times
        per batch: 5.7% of the worker's py-spy samples at 28,000 events/s were in that conversion
        (63 µs for 108 partitions; a copy of the converted set, 1.1 µs)."""
        raw = self._ensure_consumer().assignment()
        got = self._assigned
        if got is None or got[0] is not raw:
            got = (raw, frozenset(_faust_aiokafka.ensure_TPset(raw)))
            self._assigned = got  # (another thread may race here: the key is the object, so at worst converted twice)
        return set(got[1])

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset, *including* those without one.

        Faust seeks the stream partitions so after each recovery and whenever a fetch returns
        while its flow is stopped (the records are dropped: they must come again). aiokafka's
        ``seek_to_committed`` seeks only partitions with a committed offset above 0 and leaves the
        others where the fetcher stands: records of such a partition fetched and dropped so were
        lost for good (a paused broker's test run of 2026-12-08 lost the first days' calls of 81
        of 150 subscribers so: nothing was committed yet). Those partitions go back to where a
        fresh consumer would start (``auto_offset_reset``) and those committed at 0 to offset 0.
        Changelog partitions are left to Faust's recovery, which seeks them itself."""
        return await self.call_thread(self._seek_to_committed_or_start)

    async def _seek_to_committed_or_start(self) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        committed = await consumer.seek_to_committed()
        changelogs = self.consumer.app.tables.changelog_topics
        fresh = [tp for tp, off in committed.items() if off is None and tp.topic not in changelogs]
        for tp, off in committed.items():
            if off == 0 and tp.topic not in changelogs:
                consumer.seek(tp, 0)
        if fresh:
            if self.consumer.app.conf.consumer_auto_offset_reset == "latest":
                await consumer.seek_to_end(*fresh)
            else:
                await consumer.seek_to_beginning(*fresh)
        return committed

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.consumer, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)  # read when start() builds the fetcher
        return consumer


class BatchConsumer(_faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a batch path for ``batch_topics`` (see the module docstring)."""

    batch_topics: frozenset[str] = frozenset()
    batch_handler: BatchHandler | None = None
    revoke_handler: RevokeHandler | None = None
    fetch_max_wait_ms: int | None = None  # None: Faust's 1,500 ms
    prefetch: bool = False  # the next fetch under way while a batch is handled (_drain_messages)

    def _new_consumer_thread(self) -> _faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _fetch(self) -> tuple[Any, Any, int, bool]:
        """One fetch, tagged as it returns with the consumer generation and whether the flow was
        on: what the records belong to (a fetch that waited through a rebalance returns records
        of the new assignment, read from the positions its recovery sought to)."""
        records, active = await self._wait_next_records(1.0)
        return records, active, self.app.consumer_generation_id, self.flow_active

    async def _drain_messages(self, fetcher) -> None:  # noqa: C901 - one loop, as Faust's own
        """Faust's fetch loop, with the batch topics handed to ``batch_handler`` a fetch at a time.
        The next fetch is under way while a batch is handled (``prefetch``): the consumer thread
        waits on the broker meanwhile, instead of the handler waiting on it after each batch.
        Whatever a fetch returns is judged by its tags (:meth:`_fetch`), not by the time it is
        looked at: records of a generation that ended, or fetched while the flow was stopped, are
        dropped, and positions they moved are sought back (the recovery's or this loop's seek)."""
        callback = self.callback
        should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        batch_topics = self.batch_topics
        pending: asyncio.Future | None = None
        try:
            while not (should_stop() or fetcher_should_stop()):
                if pending is None:
                    pending = asyncio.ensure_future(self._fetch())
                records, active, generation, flowing = await pending
                pending = None
                if self.should_stop:
                    continue
                if not records:
                    if self.batch_handler is not None and self.flow_active:
                        await self.batch_handler({})  # nothing fetched: the handler may have records due
                    continue
                if not (flowing and self.flow_active) or self.app.consumer_generation_id != generation:
                    # fetched while a rebalance stopped the flow, or one began since: seek back to
                    # the committed offsets (as Faust's getmany does; those without one to the
                    # log's start: see _ConsumerThread.seek_to_committed), so these records come
                    # again (a new assignment starts from the committed offsets in any case)
                    logger.info(
                        "%d records of %d partitions fetched while a rebalance stopped the flow: "
                        "dropped, seeking back to the committed offsets",
                        sum(map(len, records.values())),
                        len(records),
                    )
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
                    if self.prefetch and self.flow_active:
                        pending = asyncio.ensure_future(self._fetch())  # under way while this batch is handled
                    await self.batch_handler(batch)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            if pending is not None:
                pending.cancel()

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


def request_rejoin(app) -> bool:
    """Ask the consumer group for a rebalance: aiokafka's coordinator rejoins (in the consumer
    thread's loop), Faust revokes and reassigns the partitions, and the service recovers. For a
    worker that fenced itself without the group having expired it (its membership check got no
    answer while the broker was paused, and the broker kept its membership): no rebalance would
    ever come, and it would stay fenced. False when the consumer is not running."""
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    coordinator = getattr(consumer, "_coordinator", None)
    loop = getattr(thread, "thread_loop", None)
    if coordinator is None or loop is None or loop.is_closed():
        return False
    loop.call_soon_threadsafe(coordinator.request_rejoin)
    return True


async def committed_offsets(app, tps) -> dict[TP, int | None]:
    """The consumer group's committed offset of each of ``tps`` (None: nothing committed), asked
    of the group coordinator from the consumer's thread."""
    from aiokafka.structs import TopicPartition

    thread = app.consumer._thread
    consumer = thread._ensure_consumer()

    async def ask() -> dict[TP, int | None]:
        return {tp: await consumer.committed(TopicPartition(tp.topic, tp.partition)) for tp in tps}

    return await thread.call_thread(ask)


def install(
    app,
    topics,
    handler: BatchHandler,
    on_revoke: RevokeHandler | None = None,
    fetch_max_wait_ms: int | None = None,
    raw_records: frozenset[str] = frozenset(),
    prefetch: bool = False,
) -> None:
    """Make ``app`` use :class:`BatchConsumer`, delivering ``topics`` to ``handler`` in batches,
    and calling ``on_revoke`` first thing when partitions are revoked; the broker holds a fetch
    that finds no data for at most ``fetch_max_wait_ms``; with ``prefetch`` the next fetch is under
    way while the handler works. The records of ``raw_records`` (some of
    ``topics``) reach the handler as aiokafka's own record objects (:class:`_RawPartitionRecords`:
    ``offset``, ``key``, ``value``, ``timestamp``; no ``topic``, ``partition``). Call before
    anything touches ``app.consumer``."""
    if not set(raw_records) <= set(topics):
        raise ValueError("raw_records must be batch topics")
    attrs = {
        "batch_topics": frozenset(topics),
        "batch_handler": staticmethod(handler),
        "revoke_handler": staticmethod(on_revoke) if on_revoke is not None else None,
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "prefetch": prefetch,
    }
    cls = type("AppBatchConsumer", (BatchConsumer,), attrs)
    app.transport.Consumer = cls
    _RAW_RECORD_TOPICS.update(raw_records)
    _aiokafka_fetcher.PartitionRecords = _RawPartitionRecords  # (aiokafka's fetcher builds them by this name)


PART = struct.Struct(">H")  # table values: 2-byte partition + payload


class _PartitionContext:
    """Stands in for Faust's "current event" so that a table write lands in a given partition.

    Faust's table store and changelog pick the partition from the event being processed; a
    batch holds many partitions, so each write names its own."""

    __slots__ = ("message", "__weakref__")

    class _Msg:
        __slots__ = ("partition", "topic")

        def __init__(self, partition: int, topic: str) -> None:
            self.partition = partition
            self.topic = topic

    def __init__(self, partition: int, topic: str) -> None:
        self.message = self._Msg(partition, topic)


async def _counted(fut, n: int):
    return await fut, n


@contextmanager
def _in_partition(ctx: _PartitionContext):
    from faust.streams import _current_event

    token = _current_event.set(weakref.ref(ctx))
    try:
        yield
    finally:
        _current_event.reset(token)


def by_partition(items) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """``(key, partition, value)`` items grouped by partition, as the changelog takes them."""
    out: dict[int, list[tuple[bytes, bytes | None]]] = {}
    for key, p, value in items:
        out.setdefault(p, []).append((key, value))
    return out


def put_many(table, items, topic: str) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """Write ``(key, partition, value)`` items to ``table``'s local store, each in its own
    partition (``value`` None deletes), and return them grouped by partition for the changelog."""
    store = table.data
    if getattr(store, "use_rocksdict", False) and hasattr(store, "_db_for_partition"):
        # RocksDB: one WriteBatch per partition, as Faust's own changelog recovery writes
        # (``Store.apply_changelog_batch``), not a put, a partition lookup and a key-index entry each
        import rocksdict

        grouped = by_partition(items)
        for p, kvs in grouped.items():
            wb = rocksdict.WriteBatch(raw_mode=True)
            for key, value in kvs:
                if value is None:
                    wb.delete(key)
                else:
                    wb.put(key, value)
            store._db_for_partition(p).write(wb)
        return grouped
    grouped: dict[int, list[tuple[bytes, bytes | None]]] = {}
    ctxs: dict[int, _PartitionContext] = {}
    for key, p, value in items:
        ctx = ctxs.get(p) or ctxs.setdefault(p, _PartitionContext(p, topic))
        with _in_partition(ctx):
            if value is not None:
                store[key] = value
            else:
                try:
                    del store[key]
                except KeyError:
                    pass
        grouped.setdefault(p, []).append((key, value))
    return grouped


def mark_persisted(table, results) -> None:
    """Record the changelog offsets now durable (``results``: (metadata, count) per producer
    batch), as Faust's own table writes do, so that a restart recovers only the changelog written
    after them into the local RocksDB."""
    newest: dict = {}
    for md, count in results:
        tp = TP(md.topic, md.partition)
        last = md.offset + count - 1  # a batch's metadata carries its base offset
        if last > newest.get(tp, -1):
            newest[tp] = last
    for tp, offset in newest.items():
        table.data.set_persisted_offset(tp, offset)


def owned_items(table, actives: set[int]):
    """``(key, partition, payload)`` of the table's local entries in the partitions ``actives``
    (values are a 2-byte partition + payload)."""
    for key, value in table.data.items():
        if value is None or len(value) < PART.size:
            continue
        (p,) = PART.unpack_from(value)
        if p in actives:
            yield key, p, value[PART.size :]


class Producer:
    """The aiokafka producer under Faust's: single sends, producer batches to known partitions,
    a metadata probe and a description of its queue (for the watchdog)."""

    def __init__(self, app) -> None:
        self.app = app
        self._pinned: set[str] = set()  # topics tracked by the producer's metadata (see pinned)

    def pinned(self, topic: str):
        """The aiokafka producer, with ``topic`` pinned in its metadata. aiokafka's client fetches
        metadata for all topics while it tracks none, then only for the topics it tracks: a
        topic first seen in an all-topics answer drops out of the next answer, its partitions
        lose their leader, and a batch queued for one waits forever (every later send to that
        partition waits behind it: the worker stalls). Tracking every topic we send to before
        the first send keeps each in every answer."""
        producer = self.app.producer._ensure_producer()
        if topic not in self._pinned:
            self._pinned.add(topic)
            producer.client.add_topic(topic)  # (a metadata update follows; the current view still has it)
        return producer

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None):
        """Hand one message to the producer; returns a future resolved on the broker's ack."""
        self.pinned(topic)
        return await self.app.producer.send(topic, key, value, partition, None, None)

    async def send_batches(self, topic: str, by_partition: dict[int, list[tuple[bytes, bytes | None]]]) -> list:
        """Send many messages to known partitions as producer batches (a few µs per message
        instead of a full ``send`` each). Returns futures resolving to (metadata, count)."""
        producer = self.pinned(topic)
        futs = []
        for p, items in by_partition.items():
            batch, n = producer.create_batch(), 0
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futs.append(_counted(await producer.send_batch(batch, topic, partition=p), n))
                    batch, n = producer.create_batch(), 0
                    batch.append(key=key, value=value, timestamp=None)
                n += 1
            if n:
                futs.append(_counted(await producer.send_batch(batch, topic, partition=p), n))
        return futs

    async def fetch_metadata(self, timeout: float) -> None:
        """Ask the cluster for metadata (a fresh view: the client's own is untouched); raises when
        the broker does not answer in ``timeout`` seconds."""
        client = self.app.producer._ensure_producer().client
        await asyncio.wait_for(client.fetch_all_metadata(), timeout=timeout)

    def queue_report(self) -> list[str]:
        """One line per partition with queued batches, and the sender's state."""
        lines = []
        try:
            producer = self.app.producer._ensure_producer()
            acc, sender = producer._message_accumulator, producer._sender
            for tp, batches in list(acc._batches.items()):
                if batches:
                    lines.append(
                        f"producer queue {tp.topic}[{tp.partition}]: {len(batches)} batches, leader "
                        f"{acc._cluster.leader_for_partition(tp)}, muted {tp in sender._muted_partitions}, "
                        f"linger {batches[0].remaining_linger()}, expired {batches[0].expired()}"
                    )
            lines.append(f"producer in flight {sender._in_flight}, waiter done {acc._waiter_future.done()}")
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            lines.append(f"producer state unavailable: {exc!r}")
        return lines


_RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def raw_topic(app, *names: str, partitions: int):
    """A Faust topic (or several read as one) of raw bytes keys and values."""
    return app.topic(*names, partitions=partitions, **_RAW)


def raw_table(app, name: str, partitions: int, on_recover, help: str):
    """A changelog-backed Faust table of bytes keys and values, rebuilt by ``on_recover``."""
    return app.Table(name, partitions=partitions, key_type=bytes, value_type=bytes, on_recover=on_recover, help=help)
