"""The streaming service: thin Faust I/O around the pure engine.

One agent consumes the four co-partitioned input topics in batches (``stream.take_events``),
hands the raw bytes to :class:`stream.engine.Engine`, and does the I/O the engine decides:

* each touched subscriber's state → the changelog-backed ``subscriber-state`` table (RocksDB);
* alarm records → the alarm topic, keyed by msisdn;
* rejects (malformed, invalid, late, future) → the dead-letter topic with their reason.

Exactness after a crash (at-least-once delivery made exact by idempotent state):
every subscriber's state carries the highest input offset already applied per source topic, so
a batch replayed after SIGKILL is skipped event by event. The order of writes for every batch is

    1. engine state updated in memory (decode → apply → evaluate / sweep)
    2. state of every changed subscriber written to the table: local store + changelog message
    3. alarms and dead letters sent
    4. every changelog/alarm/dead-letter send awaited until the broker acknowledged it (acks=all)
    5. only then does the loop body return, so ``take_events`` acks the batch; Faust commits
       those offsets later (after flushing the producer once more, see
       ``faust.transport.consumer.Consumer._commit_offsets``)

A crash anywhere before 5 leaves the offsets uncommitted: the batch is consumed again and the
per-subscriber offsets skip whatever step 2 had already made durable. Alarms re-sent after a
crash carry the same deterministic ``alarm_id``.

After every rebalance the table has recovered the assigned partitions from the changelog; the
recovery callback rebuilds the in-memory engine from exactly those partitions, so the sweep
covers every subscriber the worker owns, and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import struct
import time
import weakref
from contextlib import contextmanager
from typing import Any, Sequence

import faust
import numpy as np
import orjson
from faust.types import TP

from .contract import SCHEMA_VERSION
from .engine import Engine, EngineConfig
from .engine.snapshots import snapshot_many
from .metrics import Metrics
from .settings import Settings

__all__ = ["ChurnService", "build_service", "TABLE_NAME"]

logger = logging.getLogger(__name__)

TABLE_NAME = "subscriber-state"
_PART = struct.Struct(">H")  # table values: 2-byte partition + engine snapshot
_WM = struct.Struct(">d")
WATERMARK_KEY = b"\x00watermark"  # per partition: the event time the worker had reached (msisdns are digits)


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


def put_many(table, items, topic: str) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """Write ``(key, partition, value)`` items to ``table``'s local store, each in its own
    partition (``value`` None deletes), and return them grouped by partition for the changelog."""
    store = table.data
    ctxs: dict[int, _PartitionContext] = {}
    by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
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
        by_partition.setdefault(p, []).append((key, value))
    return by_partition


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
        if value is None or len(value) < _PART.size:
            continue
        (p,) = _PART.unpack_from(value)
        if p in actives:
            yield key, p, value[_PART.size:]


class ChurnService:
    """Builds the Faust app, its topics, table, agent and web views for one worker process."""

    def __init__(self, settings: Settings, engine_config: EngineConfig | None = None, registry=None, clock=time.time) -> None:
        self.settings = settings
        self.engine_config = engine_config or EngineConfig()
        self.clock = clock
        self.metrics = Metrics(registry)
        self.engine = Engine(self.engine_config, clock=clock)
        self.partition_of: dict[str, int] = {}
        self._src_index = {t: i for i, t in enumerate(settings.input_topics)}
        self._last_swept_day: int | None = None
        self._tp_watermark: dict[TP, float] = {}  # newest event time applied per input partition
        self._tp_next: dict[TP, int] = {}  # next offset to read per input partition (batches made durable)
        self._pending_next: dict[TP, int] = {}
        self._eval_time: float | None = None  # event time of evaluations and sweeps, never decreasing
        self.app = self._make_app()
        s = settings
        raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        # the inputs, and the second-SIM evidence keyed by subscriber (co-partitioned with them)
        self.inputs = self.app.topic(*s.input_topics, s.topic_shadow_evidence, partitions=s.partitions, **raw)
        self.alarm_topic = self.app.topic(s.topic_alarms, partitions=s.partitions, **raw)
        self.deadletter_topic = self.app.topic(s.topic_deadletter, partitions=s.partitions, **raw)
        self.table = self.app.Table(
            TABLE_NAME,
            partitions=s.partitions,
            key_type=bytes,
            value_type=bytes,
            on_recover=self._on_recover,
            help="per-subscriber engine state (2-byte partition + engine snapshot)",
        )
        self.agent = self.app.agent(self.inputs, name="churn-engine")(self._agent)
        from .shadow_service import ShadowStages

        self.shadow = ShadowStages(self)
        from .web import register_views

        register_views(self)

    # ------------------------------------------------------------------ app
    def _make_app(self) -> faust.App:
        s = self.settings
        kwargs: dict[str, Any] = {}
        if s.security_protocol != "PLAINTEXT":
            kwargs["broker_credentials"] = _credentials(s)
        return faust.App(
            s.app_id,
            broker=",".join(f"kafka://{hp.strip()}" for hp in s.bootstrap_servers.split(",")),
            store=s.store,
            datadir=s.data_dir,
            topic_partitions=s.partitions,
            topic_replication_factor=1,
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=True,
            web_bind=s.web_host,
            web_host=s.web_host,
            web_port=s.web_port,
            canonical_url=s.web_url or f"http://{s.web_host}:{s.web_port}",
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            broker_commit_every=s.commit_every,
            broker_commit_interval=s.commit_interval_s,
            producer_max_batch_size=512 * 1024,  # changelog batches of a few hundred states
            table_standby_replicas=0,
            stream_wait_empty=False,
            autodiscover=False,
            **kwargs,
        )

    # ---------------------------------------------------------------- agent
    async def _agent(self, stream) -> None:
        s = self.settings
        # Faust's producer buffer warns and throttles past 100 queued messages; one batch queues a
        # changelog message per changed subscriber, so size it to a batch.
        self.app.producer.buffer.max_messages = max(1000, 2 * s.batch_size)
        async for events in stream.take_events(s.batch_size, within=s.batch_timeout_s):
            try:
                await self.process(events)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not bad input (bad input is dead-lettered by process)
                self.fatal("churn-engine")

    def fatal(self, agent: str) -> None:
        """take_events acks the batch when the loop body returns, even after an exception; exiting
        hard here keeps its offsets uncommitted so nothing is lost, and the per-subscriber offsets
        (idempotent stages in the second-SIM join) make the replay exact after the supervisor
        restarts us."""
        logger.critical("unexpected error processing a batch in %s; exiting so the batch is replayed", agent, exc_info=True)
        logging.shutdown()
        os._exit(70)

    async def process(self, events: Sequence[Any]) -> None:
        """Process one batch of Faust events end to end (see the module docstring for the order)."""
        t0 = time.perf_counter()
        assigned = self.app.consumer.assignment()
        raws: list[bytes] = []
        keys: list[bytes] = []
        src: list[int] = []
        offsets: list[int] = []
        msgs = []
        evidence_msgs = []
        evidence_topic = self.settings.topic_shadow_evidence
        for ev in events:
            m = ev.message
            if TP(m.topic, m.partition) not in assigned:
                continue  # buffered before a rebalance took the partition away: its new owner replays it
            if m.topic == evidence_topic:
                evidence_msgs.append(m)
                continue
            raws.append(m.value if m.value is not None else b"")
            keys.append(m.key if m.key is not None else b"")  # no key: rejected as key_mismatch
            src.append(self._src_index[m.topic])
            offsets.append(m.offset)
            msgs.append(m)
        if not msgs and not evidence_msgs:
            return
        eng = self.engine
        before = dict(eng.counters)
        batch, rejects = eng.decode(raws, keys=keys, src=np.asarray(src, dtype=np.int8), offsets=np.asarray(offsets, dtype=np.int64))
        touched = eng.apply(batch)
        contacts = eng.last_contacts
        rejects = list(rejects) + list(eng.last_rejects)
        complete_s = self._complete_time(msgs, batch)
        if complete_s is not None:  # event time only moves forward, also across restarts
            self._eval_time = complete_s if self._eval_time is None else max(self._eval_time, complete_s)
        complete_s = self._eval_time
        # remember each touched subscriber's partition (sweep-time writes need it)
        part_of = self.partition_of
        key_part = {m.key: m.partition for m in msgs}
        for msisdn in eng.msisdns(touched):
            p = key_part.get(msisdn.encode())
            if p is not None:
                part_of[msisdn] = p
        # the same order as the backtest: sweeps for the days the watermark rolled over, then
        # the evaluation of the subscribers this batch touched
        alarms, swept = self._maybe_sweep(complete_s)
        alarms.extend(eng.evaluate(touched, now_s=complete_s))
        changed = np.unique(np.concatenate([touched, swept])) if len(swept) else touched
        if evidence_msgs:  # second-SIM candidates for our subscribers: confirm against their state
            confirmed = eng.apply_shadow(self._evidence(evidence_msgs))
            if len(confirmed):
                self.metrics.shadow_confirmed.inc(len(confirmed))
                alarms.extend(eng.evaluate(confirmed, now_s=complete_s))
                changed = np.unique(np.concatenate([changed, confirmed]))

        sends = await self._write_state(changed, {m.partition for m in msgs})
        n_changelog = len(sends)
        # the second-SIM join's routing: contacts by competitor number, circle band keys by band
        sends += await self.shadow.route_from_engine(contacts, eng.take_shadow_publications())
        for a in alarms:
            sends.append(await self._send(self.settings.topic_alarms, a["msisdn"].encode(), orjson.dumps(a)))
        for r in rejects:
            sends.append(await self._send_deadletter(msgs[r.index], r))
        if sends:
            # Wait until the broker acknowledged every changelog, alarm and dead-letter message
            # (acks=all); only then may take_events ack this batch's offsets.
            results = await asyncio.gather(*sends)
            mark_persisted(self.table, results[:n_changelog])
        self._tp_next.update(self._pending_next)
        self._observe(len(msgs), before, rejects, alarms, msgs, time.perf_counter() - t0)

    def _complete_time(self, msgs, batch) -> float | None:
        """The event time up to which every input partition of this worker is complete: the
        slowest partition that still has a backlog sets it; caught-up partitions do not hold it
        back. Kafka hands out one topic's backlog ahead of another's (calls days ahead of SMS
        while catching up); judging subscribers at the newest event time would read the missing
        SMS as a traffic drop. Evaluation and sweeps run at this time instead."""
        wm = self._tp_watermark
        # the positions after this batch; published to ``_tp_next`` (the lag gauge) only once the
        # batch is durable, so lag 0 never shows while its state writes are still in flight
        nxt = dict(self._tp_next)
        tps = [TP(m.topic, m.partition) for m in msgs]
        for tp, m in zip(tps, msgs):
            nxt[tp] = m.offset + 1
        self._pending_next = nxt
        if len(batch):
            for i, ts in zip(batch.idx.tolist(), batch.ts.tolist()):
                if ts > wm.get(tps[i], float("-inf")):
                    wm[tps[i]] = ts
        consumer = self.app.consumer
        lagging = []
        for tp, n in nxt.items():
            try:
                hw = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not fetched yet
                hw = None
            if hw is not None and hw > n and tp in wm:
                lagging.append(wm[tp])
        return min(lagging) if lagging else self.engine.watermark_s

    def _evidence(self, msgs) -> list[dict]:
        out = []
        for m in msgs:
            try:
                entries = orjson.loads(m.value)["e"]
            except (orjson.JSONDecodeError, TypeError, KeyError):
                self.metrics.shadow_bad.labels(topic=m.topic).inc()
                continue
            for ev in entries if isinstance(entries, list) else ():
                try:
                    out.append({"s": str(ev["s"]), "x": int(ev["x"]), "sig": [int(v) for v in ev["sig"]], "first": int(ev["first"]),
                                "last": int(ev["last"]), "day": int(ev["day"])})
                except (TypeError, KeyError, ValueError):
                    self.metrics.shadow_bad.labels(topic=m.topic).inc()
        return out

    def _maybe_sweep(self, complete_s: float | None) -> tuple[list[dict], np.ndarray]:
        """When event time (complete across the inputs) rolls over to a new day, sweep all
        subscribers at the start of each day it passed (at most 60, as the backtest does).
        Returns (alarms, evaluated rows)."""
        eng = self.engine
        wm = complete_s
        none = np.empty(0, dtype=np.int64)
        if wm is None:
            return [], none
        day = eng.day_of(wm)
        last = self._last_swept_day
        if last is None or day <= last:
            self._last_swept_day = day if last is None else last
            return [], none
        self._last_swept_day = day
        t0 = time.perf_counter()
        alarms: list[dict] = []
        rows = []
        for d in range(max(last + 1, day - 60), day + 1):
            alarms.extend(eng.sweep(eng.config.day_start_s(d)))
            evaluated = getattr(eng, "last_evaluated", None)
            if evaluated is not None:
                rows.append(np.asarray(evaluated, dtype=np.int64))
        dt = time.perf_counter() - t0
        self.metrics.sweep_seconds.observe(dt)
        self.metrics.sweeps.inc()
        logger.info("event-time sweep to day %s over %d subscribers: %d alarms, %.3fs", day, len(eng), len(alarms), dt)
        return alarms, (np.unique(np.concatenate(rows)) if rows else none)

    async def _write_state(self, rows: np.ndarray, partitions: set[int]) -> list:
        """Write the state of ``rows`` to the table's local store and send it to the changelog,
        each in its subscriber's partition, and the worker's watermark to each of ``partitions``
        (so a restarted or new owner never evaluates at an earlier time). Returns the changelog
        send futures."""
        eng = self.engine
        msisdns = eng.msisdns(rows)
        parts = [self.partition_of.get(m) for m in msisdns]
        keep = [i for i, p in enumerate(parts) if p is not None]  # never seen in a batch of ours: nothing to persist
        snaps = snapshot_many(eng, np.asarray(rows, dtype=np.int64)[keep]) if keep else []
        items = [(msisdns[i].encode(), parts[i], _PART.pack(parts[i]) + snap) for i, snap in zip(keep, snaps)]
        wm = self._eval_time
        if wm is not None:
            items += [(WATERMARK_KEY, p, _PART.pack(p) + _WM.pack(wm)) for p in partitions]
        return await self._send_batches(self._changelog_topic, put_many(self.table, items, self.settings.topic_calls))

    async def _send_batches(self, topic: str, by_partition: dict[int, list[tuple[bytes, bytes]]]) -> list:
        """Send many messages to known partitions as producer batches (a few µs per message
        instead of a full ``send`` each). Returns futures resolving to (metadata, count)."""
        producer = self.app.producer._ensure_producer()  # the aiokafka producer under Faust's
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

    @property
    def _changelog_topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    async def _send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None):
        """Hand one message to the producer; returns a future resolved on the broker's ack."""
        return await self.app.producer.send(topic, key, value, partition, None, None)

    async def _send_deadletter(self, msg, reject) -> Any:
        record = {
            "original_b64": base64.b64encode(msg.value or b"").decode("ascii"),
            "key_b64": base64.b64encode(msg.key).decode("ascii") if msg.key is not None else None,
            "topic": msg.topic,
            "partition": msg.partition,
            "offset": msg.offset,
            "reason": reject.reason,
            "detail": reject.detail,
            "failed_at": self.clock(),
            "schema_version": SCHEMA_VERSION,
        }
        logger.debug("dead letter %s[%d]@%d: %s (%s)", msg.topic, msg.partition, msg.offset, reject.reason, reject.detail)
        return await self._send(self.settings.topic_deadletter, msg.key, orjson.dumps(record))

    def _observe(self, n: int, before: dict, rejects, alarms, msgs, seconds: float) -> None:
        m = self.metrics
        after = self.engine.counters
        for name, value in after.items():
            delta = value - before.get(name, 0)
            if not delta:
                continue
            if name.startswith("applied_"):
                m.events.labels(type=name[len("applied_"):]).inc(delta)
            elif name == "skipped":
                m.replayed.inc(delta)
        for r in rejects:
            m.rejects.labels(reason=r.reason).inc()
            if r.reason == "late":
                m.late.inc()
            elif r.reason == "future":
                m.future.inc()
        m.deadletters.inc(len(rejects))
        m.observe_alarms(alarms)
        m.batch_size.observe(n)
        m.batch_seconds.observe(seconds)
        m.subscribers.set(len(self.engine))
        wm = self.engine.watermark_s
        if wm:
            m.watermark.set(wm)
            m.event_time_lag.set(max(0.0, self.clock() - wm))

    def refresh_consumer_lag(self) -> None:
        """Set the consumer-lag gauge, at scrape time, for the input partitions this worker owns
        now: high watermark minus the next offset to read. Partitions it no longer owns vanish."""
        gauge = self.metrics.consumer_lag
        gauge.clear()
        position = self.metrics.consumer_position
        position.clear()
        consumer = self.app.consumer
        try:
            assigned = consumer.assignment()
        except Exception:  # noqa: BLE001 - not started yet
            return
        for tp in assigned:
            n = self._tp_next.get(tp)
            if n is None or tp.topic not in self._src_index:
                continue
            position.labels(topic=tp.topic, partition=str(tp.partition)).set(n)
            try:
                hw = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - lag is best effort
                continue
            if hw is not None:
                gauge.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, hw - n))

    # ------------------------------------------------------------- recovery
    def active_partitions(self) -> set[int]:
        topic = self.settings.topic_calls
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    async def _on_recover(self) -> None:
        """After a rebalance: rebuild the engine from the table's partitions this worker owns."""
        t0 = time.perf_counter()
        actives = self.active_partitions()
        engine = Engine(self.engine_config, clock=self.clock)
        part_of: dict[str, int] = {}
        n = 0
        watermark = None
        for key, p, payload in owned_items(self.table, actives):
            if key == WATERMARK_KEY:
                (wm,) = _WM.unpack_from(payload)
                watermark = wm if watermark is None else max(watermark, wm)
                continue
            msisdn = key.decode()
            engine.restore(msisdn, payload)
            part_of[msisdn] = p
            n += 1
        if watermark is not None:
            engine.advance_watermark(watermark)
        self._eval_time = watermark
        self.engine = engine
        self.partition_of = part_of
        # redo the last day's sweep (idempotent): a crash may have cut it short
        self._last_swept_day = None if watermark is None else engine.day_of(watermark) - 1
        self._tp_watermark.clear()
        self._tp_next.clear()
        self.metrics.restored.inc(n)
        self.metrics.subscribers.set(len(engine))
        logger.info("recovered %d subscribers for partitions %s in %.2fs", n, sorted(actives), time.perf_counter() - t0)


def _credentials(s: Settings):
    from faust.auth import SASLCredentials, SSLCredentials

    ssl_context = None
    if "SSL" in s.security_protocol:
        from aiokafka.helpers import create_ssl_context

        ssl_context = create_ssl_context(cafile=s.ssl_cafile, certfile=s.ssl_certfile, keyfile=s.ssl_keyfile)
    if s.security_protocol.startswith("SASL"):
        return SASLCredentials(username=s.sasl_username, password=s.sasl_password, mechanism=s.sasl_mechanism, ssl_context=ssl_context)
    return SSLCredentials(ssl_context)


def build_service(settings: Settings | None = None, registry=None) -> ChurnService:
    """Settings from the environment (unless given), thresholds from CHURNWATCH_CONFIG."""
    settings = settings or Settings.from_env()
    config = EngineConfig.from_toml(settings.config_path) if settings.config_path else EngineConfig()
    return ChurnService(settings, config, registry=registry)
