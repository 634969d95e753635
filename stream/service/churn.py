"""The streaming service: thin Faust I/O around the pure engine.

The batch consumer (:mod:`stream.service.faust_adapter`) hands each fetch of the four
co-partitioned input topics (and the second-SIM evidence) to :meth:`ChurnService.on_records` as
raw records grouped by partition. The service aligns partitions in event time (records too far
ahead of the slowest partition with a backlog wait, their partition paused), runs the engine's
batch step (:class:`stream.engine.step.Step`: decode → apply → immediate alarms → decisions of
the days the complete time finished → second-SIM confirmation) and does the I/O it decides:

* alarm records → the alarm topic, keyed by msisdn, at once (deterministic ``alarm_id``);
* rejects (malformed, invalid, late, future) → the dead-letter topic with their reason;
* changed subscribers → marked dirty, their state written at the next checkpoint.

Exactness after a crash (at-least-once delivery made exact by idempotent state): every
subscriber's state carries the highest input offset already applied per source topic, so records
replayed after SIGKILL are skipped event by event. :meth:`ChurnService.checkpoint` writes down the
order: dirty states → table (RocksDB + changelog) → every send acknowledged → input offsets
committed. A crash anywhere before the commit replays from the previous commit; alarms re-sent
then carry the same ``alarm_id``.

After every rebalance the table has recovered the assigned partitions from the changelog; the
recovery callback rebuilds the in-memory engine from exactly those partitions, so decisions cover
every subscriber the worker owns, and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import os
import struct
import time
from typing import Any

import faust
import numpy as np
import orjson
from faust.types import TP

from ..contract import SCHEMA_VERSION
from ..engine import Engine, EngineConfig
from ..engine.decode import Batch
from ..engine.handsets import LATEST
from ..engine.step import Step
from ..settings import STATE_TABLE, Settings
from .faust_adapter import (
    PART,
    Producer,
    committed_offsets,
    install,
    mark_persisted,
    owned_items,
    put_many,
    raw_table,
    raw_topic,
    request_rejoin,
)
from .handsets import (
    HEARTBEAT_S,
    SWITCH_PREFIX,
    heartbeat_messages,
    parse_newest,
    parse_switch_key,
    parse_switches,
    parse_times,
    switch_key,
    switch_messages,
)
from .metrics import Metrics
from .shadow import IDLE_DAY, Marks, ShadowStages, parse_mark
from .web import register_views

__all__ = ["ChurnService", "build_service", "newest_items", "TABLE_NAME"]

logger = logging.getLogger(__name__)

TABLE_NAME = STATE_TABLE
_WM = struct.Struct(">d")
_DECIDED = struct.Struct(">i")  # after _WM in a watermark item (since 2026-12-07): the last day decided in full
# after _DECIDED (since 2026-12-08): the input offsets the checkpoint that wrote the item commits, per
# source topic (index in Settings.input_topics): a count, then (source, next offset) pairs
_NOFF = struct.Struct(">H")
_OFF = struct.Struct(">Bq")
NO_DECIDED = -(2**31)  # _DECIDED in an item with offsets when no day is decided in full yet
# A partition with a backlog that has delivered nothing yet holds the others back for at most
# this long after a start or rebalance (a partition whose fetches never return would stall all)
UNKNOWN_GRACE_S = 30.0
LIVE_COMMIT_EVERY = 2_000  # events per checkpoint at most when the worker is not catching up (see _due)
DEADLETTER_ORIGINAL_MAX = 64 * 1024  # bytes of an original carried in its dead letter (the rest: size + sha256)
# per partition: the event time the worker had decided up to (NaN: no decision yet) and the last day
# it had decided in full (msisdns are digits: no subscriber has this key)
WATERMARK_KEY = b"\x00watermark"
IDLE_TIME = 1e15  # reported for a caught-up input partition: it holds nobody's decisions back
RESTORE_CHUNK = 65536  # snapshots read from the table before they are restored together (Engine.restore_many)
# a caught-up partition's end offset is asked again at most this often when no day's decision waits on
# it (_verify_idle)
VERIFY_EVERY_S = 1.0
VERIFY_TIMEOUT_S = 5.0  # (the lock is held meanwhile: a broker away must not hold it for a request timeout)
DECIDE_CHUNK = 32768  # subscribers decided per round at most: a day of a million in ~30 parts of ~0.4 s


class ChurnService:
    """Builds the Faust app, its topics, table, agent and web views for one worker process."""

    def __init__(
        self, settings: Settings, engine_config: EngineConfig | None = None, registry=None, clock=time.time
    ) -> None:
        self.settings = settings
        self.engine_config = engine_config or EngineConfig()
        self.clock = clock
        self.metrics = Metrics(registry)
        self.engine = Engine(self.engine_config, clock=clock)
        self.engine.route_handsets = True  # its handset switches go to every worker (handsets.py)
        self.step = Step(
            self.engine, chunk_rows=DECIDE_CHUNK
        )  # apply -> immediate alarms -> day decisions -> confirmation
        self._row_part = np.full(0, -1, dtype=np.int32)  # engine row -> its input (and table) partition, -1: none
        self._src_index = {t: i for i, t in enumerate(settings.input_topics)}
        self._tp_watermark: dict[TP, float] = {}  # newest event time applied per input partition
        self._tp_next: dict[TP, int] = {}  # next offset per input partition: everything before it is durable
        self._pending_next: dict[TP, int] = {}  # ... processed since the last checkpoint (not durable yet)
        self._processed_next: dict[TP, int] = {}  # ... processed (durable or not)
        self._progress_at: dict[TP, float] = {}  # monotonic time of each partition's last delivered batch
        # input records were last received then (monotonic), and per caught-up input partition the
        # time a fresh end-offset request that found it caught up was sent (_verify_idle)
        self._input_at = -math.inf
        self._idle_at: dict[TP, float] = {}
        self._verified_at = -math.inf  # the last such request was sent then
        self._verify_ok = True  # ... and answered
        self._eval_time: float | None = None  # complete event time (decisions follow it), never decreasing
        # every input partition's complete time, as its worker reported it on the evidence topic
        # (its handset switches before it are in): decisions wait for the least (_decision_time)
        self._peer_time: dict[int, float] = {}
        # per input partition: the newest event time its worker applied (as it reported)
        self._peer_newest: dict[int, float] = {}
        self._remote_switches: dict[tuple[bytes, int], int] = {}  # (table key, partition) persisted: day
        self._void: list[int] = []  # the void days (feed outages) the latest decision read (logged once)
        self._decide_s: float | None = None  # the event time decided up to (persisted as the watermark)
        # the second-SIM join's barrier (stream/service/shadow.py): per evidence partition, the
        # day each bands partition reported it has answered (decisions wait for it: _shadow_cap),
        # and this worker's last mark sent (day, monotonic time, partitions)
        self._shadow_marks = Marks(settings.partitions)
        self._mark_sent: tuple[int, float, frozenset] | None = None
        # the last heartbeat: (event time, monotonic time, the times per partition sent)
        self._heartbeat_sent: tuple[float, float, dict[int, float]] | None = None
        # how far past the other workers' reported time events may be applied: the ring must still hold the
        # days a decision reads (it waits for that time) next to the newest day applied (the room
        # check_decision_window checks for the alignment; an hour to spare)
        cfg = self.engine_config
        room = (cfg.ring_days - cfg.baseline_days - cfg.recent_days) * 86400
        self._peer_window = max(settings.max_skew_s, room - cfg.decision_grace_s - 3600)
        self._dirty: list[np.ndarray] = []  # engine rows changed since the last checkpoint
        self._dirty_partitions: set[int] = set()
        # (engine rows, table items) sent to the changelog since the last store flush
        self._unflushed: list[tuple[np.ndarray, list]] = []
        self._unflushed_partitions: set[int] = set()
        self._flushed_at = time.monotonic()
        self._inflight: list = []  # send futures since the last checkpoint
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._ckpt_task: asyncio.Future | None = None
        self._generation = 0  # bumped at every rebuild of the engine (rebalance)
        self._paused: set[TP] = set()  # input partitions paused by the event-time alignment
        self._held: dict[TP, list] = {}  # per partition: fetched records on wait (ahead of the others)
        self._held_ts: dict[TP, np.ndarray] = {}  # ... and of each of them (-inf: not known)
        self._lock = asyncio.Lock()
        self._stuck_reported = False
        self._broker_ok_at = time.monotonic()  # the broker last answered (a fetch with records, a commit, a probe)
        self._member_ok_at = -math.inf  # a commit the coordinator accepted was sent then (see _still_member)
        self._recovered_once = False  # the engine holds this worker's partitions (first recovery done)
        self._fenced_at = 0.0
        self._rejoin_at = -math.inf  # a rebalance was last asked for then (see _rejoin)
        # per state partition: the input offsets (source index -> next) its watermark items record
        self._item_offsets: dict[int, dict[int, int]] = {}
        # per input partition: the group's committed offset read at the last recovery, until its first fetch
        self._resume_at: dict[TP, int] = {}
        self._fence_reason = ""
        self._fenced = False  # no state writes, no commits until the next recovery (see on_revoke)
        self._recovered_at = time.monotonic()
        self.app = self._make_app()
        self.producer = Producer(self.app)
        install(
            self.app,
            [*settings.input_topics, settings.topic_shadow_evidence],
            self.on_records,
            self.on_revoke,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            raw_records=frozenset(settings.input_topics),
            prefetch=bool(settings.prefetch),
        )
        s = settings
        # the inputs, and the second-SIM evidence keyed by subscriber (co-partitioned with them)
        self.inputs = raw_topic(self.app, *s.input_topics, s.topic_shadow_evidence, partitions=s.partitions)
        self.alarm_topic = raw_topic(self.app, s.topic_alarms, partitions=s.partitions)
        self.deadletter_topic = raw_topic(self.app, s.topic_deadletter, partitions=s.partitions)
        self.table = raw_table(
            self.app,
            TABLE_NAME,
            s.partitions,
            self._on_recover,
            "per-subscriber engine state (2-byte partition + engine snapshot)",
        )
        self.agent = self.app.agent(self.inputs, name="churn-engine")(self._agent)
        self.app.task(self._checkpoint_timer)
        self.app.task(self._watchdog)
        self.shadow = ShadowStages(self)
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
            # no built-in views: /table/ would serve raw subscriber state (contact numbers, IMEI),
            # /router/ the cluster's hosts and assignments; /subscribers/ is ours and masks
            web_tables_enabled=False,
            web_router_enabled=False,
            web_graph_enabled=False,
            web_stats_enabled=False,
            canonical_url=s.web_url or f"http://{s.web_host}:{s.web_port}",
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            broker_commit_every=s.commit_every,
            # a worker silent this long (frozen, partitioned off) loses its partitions to the others
            broker_session_timeout=s.session_timeout_s,
            consumer_group_instance_id=s.instance_id,  # static membership (None: dynamic)
            broker_heartbeat_interval=min(3.0, s.session_timeout_s / 3),
            broker_commit_interval=s.commit_interval_s,
            producer_max_batch_size=512 * 1024,  # changelog batches of a few hundred states
            broker_max_poll_records=s.batch_size,  # one fetch = one batch of at most this many records
            table_standby_replicas=0,
            stream_wait_empty=False,
            autodiscover=False,
            **kwargs,
        )

    # ---------------------------------------------------------------- input
    async def _agent(self, stream) -> None:
        """Keeps the input topics subscribed (so Faust's assignor co-partitions the table with
        them). Their messages never reach this stream: :class:`stream.service.faust_adapter.BatchConsumer`
        hands them to :meth:`on_records` in batches."""
        async for _ in stream:  # pragma: no cover - nothing arrives here
            pass

    def fatal(self, agent: str) -> None:
        """Exit hard on a bug (not bad input: that is dead-lettered). Nothing of the failed batch
        is committed, so it is consumed again after the supervisor restarts us, and the
        per-subscriber offsets (idempotent stages in the second-SIM join) make the replay exact."""
        logger.critical(
            "unexpected error processing a batch in %s; exiting so the batch is replayed", agent, exc_info=True
        )
        logging.shutdown()
        os._exit(70)

    async def on_records(self, records: dict[TP, list]) -> None:
        """One fetch of raw input records (grouped by partition) from the batch consumer (an
        empty one about every second while nothing arrives: held records may be due)."""
        generation = self._generation
        try:
            async with self._lock:
                if records:
                    self._broker_ok_at = time.monotonic()
                if self._fenced or generation != self._generation:
                    return  # revoked, or fetched before a recovery: it seeks to the committed offsets
                if self._resume_at:
                    records = await self._resume_check(records)
                await self._learn_positions(records)
                while True:
                    rnd = self._round(records)
                    records = {}
                    n = await self._process_records(rnd) if rnd else 0
                    if not n:
                        break  # (a round that processed nothing: all of it on wait again)
                    if await self._verify_idle():  # (a day waits on caught-up partitions)
                        await self._decide_due()
                    if self._due():
                        await self.checkpoint()
                    if n < self.settings.batch_size // 4 and self._fetch_may_help():
                        break  # a small round: the next fetch moves the slowest partition further
                    await asyncio.sleep(0)
                if self._recovered_once:
                    await self._verify_idle()
                    await self._decide_due()
                self._align()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug, not bad input (bad input is dead-lettered)
            self.fatal("churn-engine")

    def _round(self, records: dict[TP, list]) -> dict[TP, list]:
        """The records to process next: this fetch's, plus the held ones of partitions whose
        next event time is within the skew of the slowest partition again."""
        assigned = self.app.consumer.assignment()
        rnd: dict[TP, list] = {}
        for tp, recs in records.items():
            if tp not in assigned or not recs:
                continue  # fetched before a rebalance took it away: its new owner replays it
            recs = self._contiguous(tp, recs)
            if not recs:
                continue
            if tp in self._held:
                # behind records on wait (fetched before the pause took effect): they wait too, in
                # order, since each subscriber's offsets must be applied in partition order; their
                # time is not known before they are decoded (-inf: released with those before them)
                self._held[tp].extend(recs)
                self._held_ts[tp] = np.concatenate([self._held_ts[tp], np.full(len(recs), -np.inf)])
            else:
                rnd[tp] = recs
        limit = self._align_limit()
        for tp in list(self._held):
            if tp not in assigned:
                self._drop_held(tp)
                continue
            ts = self._held_ts[tp]
            over = ts > limit if limit is not None else np.zeros(len(ts), dtype=bool)
            cut = int(np.argmax(over)) if over.any() else len(ts)
            if cut == 0:
                continue
            rnd[tp] = self._held[tp][:cut]  # released: decoded once more, then applied
            if cut == len(ts):
                self._drop_held(tp)
            else:
                self._held[tp] = self._held[tp][cut:]
                self._held_ts[tp] = ts[cut:]
        return rnd

    def _contiguous(self, tp: TP, recs: list) -> list:
        """The records of a fetch that follow what this partition already delivered: an overlap
        (records already processed or held) is cut; a gap is counted and logged (offsets that hold
        no record, such as transaction markers, or records lost on the way: a bug)."""
        held = self._held.get(tp)
        expected = held[-1].offset + 1 if held else self._processed_next.get(tp)
        if expected is None or recs[0].offset == expected:
            return recs
        if recs[0].offset < expected:
            return [r for r in recs if r.offset >= expected]
        self.metrics.input_gaps.labels(topic=tp.topic).inc()
        logger.warning(
            "input %s[%d]: fetch starts at offset %d, expected %d (%d offsets skipped)",
            tp.topic,
            tp.partition,
            recs[0].offset,
            expected,
            recs[0].offset - expected,
        )
        return recs

    def _fetch_may_help(self) -> bool:
        """Whether a partition with a backlog is being fetched (not paused, nothing held)."""
        return any(behind and tp not in self._held and tp not in self._paused for tp, behind in self._backlog().items())

    def _drop_held(self, tp: TP) -> None:
        self._held.pop(tp, None)
        self._held_ts.pop(tp, None)

    def _frontiers(self, fresh: bool = False) -> tuple[dict[TP, float], set[TP]]:
        """Each input partition's next event time, for those with a backlog (on the broker or
        held here): the first held record's ts, else the newest ts it delivered. Also the
        partitions with a backlog whose time is not known yet (nothing delivered since the start
        or the last rebalance, or no fetch answered yet). ``fresh``: a partition caught up as of
        its last fetch counts as one with a backlog unless an end-offset request sent after the
        latest input records arrived found it caught up (:meth:`_verify_idle`)."""
        out: dict[TP, float] = {}
        unknown: set[TP] = set()
        wm = self._tp_watermark
        for tp, behind in self._backlog().items():
            if tp in self._held_ts:
                out[tp] = float(self._held_ts[tp][0])  # the first record on wait
            elif behind is None or (behind and tp not in wm):
                unknown.add(tp)
            elif behind:
                out[tp] = wm[tp]
            elif fresh and not self._verified_idle(tp):
                if tp in wm:
                    out[tp] = wm[tp]
                else:
                    unknown.add(tp)
        return out, unknown

    def _align_limit(self, firsts: dict[TP, float] | None = None) -> float | None:
        """Records newer than this wait (event-time alignment): ``max_skew_s`` past the slowest
        partition that still has a backlog. ``firsts``: the first event time of the partitions
        read just now (their next event time). While a partition with a backlog has not
        delivered anything yet (for at most ``UNKNOWN_GRACE_S`` after a start or rebalance),
        everything waits for it: -inf. None: no limit (nothing behind)."""
        fr, unknown = self._frontiers()
        if firsts:
            fr.update(firsts)
            unknown -= firsts.keys()
        if unknown and time.monotonic() - self._recovered_at < UNKNOWN_GRACE_S:
            return -math.inf
        limit = min(fr.values()) + self.settings.max_skew_s if fr else None
        # ... and across workers: no further than _peer_window past the time the slowest worker
        # reported, so that decisions, which wait for that time, never fall further behind the
        # newest events applied than the ring allows. Before every worker reported: past our last
        # report.
        base = self._peer_gate()
        if base is None and self._heartbeat_sent is not None:
            base = self._heartbeat_sent[0]
        cap = self._shadow_cap()  # (decisions wait for the second-SIM join too)
        if base is not None and cap is not None:
            base = min(base, cap)
        if base is not None:
            limit = base + self._peer_window if limit is None else min(limit, base + self._peer_window)
        return limit

    def _hold_ahead(
        self, batch, tp_first: dict[TP, int], tp_of: list[TP]
    ) -> tuple[np.ndarray, dict[TP, int], np.ndarray]:
        """Split the decoded round: per partition, the records from its first event beyond the
        alignment limit on wait (held, the partition paused). Returns the raw indices to process
        now (a boolean mask), per partition cut the raw index where its held part starts, and
        each raw record's ts (-inf where it did not decode)."""
        n = len(tp_of)
        ts = np.full(n, -np.inf)
        ts[batch.idx] = batch.ts
        # an event the engine will reject as ``future`` (beyond the wall clock's bound) neither
        # waits nor sets a partition's next event time: a year-2100 event at the head of a
        # partition would otherwise become the complete event time once the others caught up
        ts[ts > self.clock() + self.engine_config.max_future_s] = -np.inf
        starts = list(tp_first.values()) + [n]
        # partitions read just now count with their first valid event (their next event time)
        firsts = {}
        for j, (tp, a) in enumerate(tp_first.items()):
            b = starts[j + 1]
            fin = np.flatnonzero(np.isfinite(ts[a:b]))
            if len(fin):
                firsts[tp] = float(ts[a + fin[0]])
        limit = self._align_limit(firsts)
        keep = np.ones(n, dtype=bool)
        cuts: dict[TP, int] = {}
        if limit is None:
            return keep, cuts, ts
        over = ts > limit
        if not over.any():
            return keep, cuts, ts
        for j, tp in enumerate(tp_first):
            a, b = starts[j], starts[j + 1]
            seg = over[a:b]
            if seg.any():
                c = a + int(np.argmax(seg))
                keep[c:b] = False
                cuts[tp] = c
        return keep, cuts, ts

    async def _process_records(self, records: dict[TP, list]) -> int:
        """Decode → apply → sweeps → evaluation → shadow confirmation for one round; alarms, dead
        letters and the join's messages are handed to the producer at once; changed subscribers
        are only marked dirty (their state is written at the next checkpoint)."""
        t0 = time.perf_counter()
        evidence_topic = self.settings.topic_shadow_evidence
        raws: list[bytes] = []
        keys: list[bytes] = []
        src: list[int] = []
        offsets: list[int] = []
        msgs: list = []
        tp_of: list[TP] = []
        tp_first: dict[TP, int] = {}
        evidence_msgs = []
        for tp, recs in records.items():
            if tp.topic == evidence_topic:
                evidence_msgs.extend(recs)
                self._pending_next[tp] = recs[-1].offset + 1
                continue
            si = self._src_index[tp.topic]
            tp_first[tp] = len(msgs)
            raws += [m.value if m.value is not None else b"" for m in recs]
            keys += [m.key if m.key is not None else b"" for m in recs]  # no key: rejected as key_mismatch
            offsets += [m.offset for m in recs]
            src += [si] * len(recs)
            tp_of += [tp] * len(recs)
            msgs.extend(recs)
        if msgs:
            self._input_at = time.monotonic()  # (caught-up partitions are verified again: _verify_idle)
        eng = self.engine
        before = dict(eng.counters)
        batch, rejects = eng.decode(
            raws, keys=keys, src=np.asarray(src, dtype=np.int8), offsets=np.asarray(offsets, dtype=np.int64)
        )
        keep, cuts, raw_ts = self._hold_ahead(batch, tp_first, tp_of)
        for tp, c in cuts.items():  # on wait until the slower partitions catch up
            end = tp_first[tp] + len(records[tp])
            # in front of what the partition still holds (a part released by this round's _round)
            self._held[tp] = msgs[c:end] + self._held.get(tp, [])
            self._held_ts[tp] = np.concatenate([raw_ts[c:end], self._held_ts.get(tp, np.empty(0))])
        if cuts:
            batch = batch.take(keep[batch.idx])
            rejects = [r for r in rejects if keep[r.index]]
        now = time.monotonic()
        for tp, first in tp_first.items():
            end = cuts.get(tp, first + len(records[tp]))
            if end > first:
                self._pending_next[tp] = self._processed_next[tp] = msgs[end - 1].offset + 1
                self._progress_at[tp] = now
        n_msgs = int(keep.sum())
        if not n_msgs and not evidence_msgs:
            return 0

        def complete(ap) -> float | None:
            # each partition's time moves with its accepted events; decisions follow the minimum
            self._advance_partition_time(batch, ap.rejects, tp_first)
            return self._decision_time()

        shadow_ev, switches = self._evidence(evidence_msgs) if evidence_msgs else ((), [])
        res = self._run_step(batch, complete, shadow_ev, [sw for _, sw in switches])
        if switches:
            await self._keep_switches(switches)
        eng = self.engine
        rejects = list(rejects) + list(res.rejects)
        # remember each new subscriber's partition (its state is written there, decisions
        # included); a subscriber's events all come from its own partition, so a row keeps its
        # partition until the engine frees it, and a row reused is created again
        new_rows, new_pos = res.created
        if new_rows:
            # (msgs holds the input records of tp_first's partitions, in that order)
            msg_part = np.repeat([tp.partition for tp in tp_first], [len(records[tp]) for tp in tp_first])
            pos = np.asarray(new_pos, dtype=np.int64)
            self._learn_partitions(np.asarray(new_rows, dtype=np.int64), msg_part[batch.idx[pos]])
        alarms = res.alarms
        self._dirty_partitions.update(tp.partition for tp, first in tp_first.items() if cuts.get(tp, first + 1) > first)
        await self._emit(res)
        sends = self._inflight
        for r in rejects:
            sends.append(await self._send_deadletter(tp_of[r.index], msgs[r.index], r))
        self._since_checkpoint += n_msgs + len(evidence_msgs)
        self._observe(n_msgs, before, rejects, alarms, time.perf_counter() - t0)
        return n_msgs + len(evidence_msgs)

    def _report_void(self, day: int) -> None:
        """The feed outages the latest decision read: a gauge, and a warning per void day once."""
        void = self.engine.void_days(day)
        self.metrics.void_days.set(len(void))
        cfg = self.engine.config
        for d in sorted(set(void) - set(self._void)):
            logger.warning(
                "event-time day %s is void: its calls or its SMS over this worker's %d subscribers are "
                "below %.0f%% of the days before (a feed outage?); left out of traffic_drop and silence",
                cfg.date_of_day(d),
                len(self.engine),
                100 * cfg.void_fraction,
            )
        self._void = void

    async def _emit(self, res) -> None:
        """A step's outputs: alarms and the join's messages handed to the producer, the changed
        rows kept dirty for the next checkpoint, the decision metrics."""
        if res.confirmed:
            self.metrics.shadow_confirmed.inc(res.confirmed)
        if res.decided:
            self.metrics.sweep_seconds.observe(res.decide_s)
            self.metrics.sweeps.inc()
            self.metrics.decided_day.set(res.decided[-1])
            logger.info(
                "decided event-time day(s) %s..%s over %d subscribers: %d alarms, %.3fs",
                res.decided[0],
                res.decided[-1],
                len(self.engine),
                len(res.alarms),
                res.decide_s,
            )
            self._report_void(res.decided[-1])
        if len(res.rows):
            self._dirty.append(res.rows)
        if res.decided and self._remote_switches:
            await self._expire_switches(res.decided[-1])
        sends = self._inflight
        # the second-SIM join's routing: contacts by competitor number, circle band keys by band
        sends += await self.shadow.route_from_engine(res.contacts, res.publications)
        await self._shadow_mark()  # (behind them: the day decided)
        # the handset switches its engine indexed, to every worker (stream/service/handsets.py)
        s = self.settings
        sends += await self.shadow.send_routed(
            s.topic_shadow_evidence, switch_messages(res.handset_ops, s.partitions), "switches"
        )
        await self._heartbeat()
        for a in res.alarms:
            sends.append(await self._send(self.settings.topic_alarms, a["msisdn"].encode(), orjson.dumps(a)))

    def _advance_eval_time(self) -> float | None:
        """The complete time, moved forward only (also across restarts): decisions follow it."""
        c = self._complete_time()
        if c is not None:
            self._eval_time = c if self._eval_time is None else max(self._eval_time, c)
        return self._eval_time

    def _peer_gate(self) -> float | None:
        """The least complete time every input partition's worker reported (None until each did)."""
        st = self._peer_time
        return min(st.values()) if len(st) >= self.settings.partitions else None

    def _decision_time(self) -> float | None:
        """The event time decisions follow: this worker's complete time, held back to the other
        workers' reported times, so that a day is decided once the handset switches of every
        worker's events before it are in (the backtest's one engine finds their evidence at
        once). Never decreasing."""
        c = self._advance_eval_time()
        if c is not None and self.step.decided is None:
            # decisions begin at this worker's first complete time, as the backtest's at its first
            # event, not when the other workers' times come in: a worker that read days of its
            # backlog before that, or fell over before it, would never decide those days (the
            # day is persisted at the next checkpoint, and a recovery resumes after it)
            self.step.decided = self.step.due(c)
            logger.info("decisions start after day %s (event time %s)", self.step.decided, c)
        g = self._peer_gate()
        cap = self._shadow_cap()
        if c is None or g is None or cap is None:
            return None
        t = min(c, g, cap)
        self._decide_s = t if self._decide_s is None else max(self._decide_s, t)
        self.metrics.decisions_held.set(max(0.0, c - self._decide_s))
        return self._decide_s

    def _shadow_day(self) -> int | None:
        """The day the second-SIM join has answered for this worker: the least mark every bands
        partition sent to each of its evidence partitions (None until all did)."""
        return self._shadow_marks.gate(sorted(self.active_partitions()))

    def _shadow_cap(self) -> float | None:
        """The latest event time decisions may follow under the second-SIM join's barrier: day
        D + 1 is decided once the join answered D (its evidence confirmed first, as the backtest
        confirms the evidence of D's publications before D + 1). inf without the join; None
        until the join has answered."""
        if not self.engine_config.shadow_enabled:
            return math.inf
        g = self._shadow_day()
        if g is None:
            return None
        if g >= IDLE_DAY:
            return math.inf
        # due(t) <= g + 1  <=>  t - grace + utc_offset < (g + 2) days
        return self.engine_config.day_start_s(g + 2) + self.step.grace_s - 1e-3

    async def _shadow_mark(self) -> None:
        """This worker's mark to the join (stage 0, stream/service/shadow.py): the day it decided,
        for the input partitions it owns, behind their contacts and publications; when it moved,
        and every HEARTBEAT_S. A worker with nothing to decide and nothing behind reports
        IDLE_DAY (it holds nobody back)."""
        if not self.engine_config.shadow_enabled or self._fenced or not self._recovered_once:
            return
        parts = frozenset(self.active_partitions())
        day = self.step.decided
        if day is None:
            report = self._report()
            if report is None or report[1] < IDLE_TIME:
                return
            day = IDLE_DAY
        if not parts:
            return
        now = time.monotonic()
        last = self._mark_sent
        if last is not None and last[0] == day and last[2] == parts and now - last[1] < HEARTBEAT_S:
            return
        self._mark_sent = (day, now, parts)
        self._inflight += await self.shadow.send_source_mark({p: day for p in parts})

    def _report(self) -> tuple[dict[int, float], float] | None:
        """What this worker tells the others: per input partition it owns, its complete time, or
        IDLE_TIME for a partition caught up on all four topics (it holds nobody back, as a
        caught-up partition does not hold this worker's own complete time back); and the time
        reported for the others. None before anything is known.

        Caught up as this worker's own complete time takes it (:meth:`_verified_idle`): an
        end-offset request sent after the latest input found it so. A high watermark of the last
        fetch is stale when a producer's records for it are on the broker already: reported idle
        on it, the others would decide days without the handset switches those records carry."""
        parts = self.active_partitions()
        if not parts or not self._recovered_once:
            return None
        idle = {p: True for p in parts}
        for tp, behind in self._backlog().items():
            if behind is not False or not self._verified_idle(tp):
                idle[tp.partition] = False
        t = self._eval_time
        if t is None and not all(idle.values()):
            return None
        t = IDLE_TIME if t is None else t
        return {p: IDLE_TIME if idle[p] else t for p in sorted(parts)}, t

    async def _heartbeat(self) -> None:
        """Tell every worker this worker's complete time (to every evidence partition, behind the
        switches of the events before it: _report) when it moved a day of decisions on, or a
        quarter of ``_peer_window`` (the alignment waits for it: see _align_limit), when a
        partition caught up or fell behind, and every HEARTBEAT_S anyway (a restarted worker
        learns it)."""
        report = self._report()
        if report is None or self._fenced:
            return
        times, t = report
        now = time.monotonic()
        last = self._heartbeat_sent
        if (
            last is not None
            and self.step.due(t) <= self.step.due(last[0])
            and t - last[0] < self._peer_window / 4
            and now - last[1] < HEARTBEAT_S
            and times.keys() == last[2].keys()
            and all((v == IDLE_TIME) == (last[2][p] == IDLE_TIME) for p, v in times.items())
        ):
            return
        self._heartbeat_sent = (t, now, times)
        s = self.settings
        self._inflight += await self.shadow.send_routed(
            s.topic_shadow_evidence, heartbeat_messages(times, s.partitions, self.engine.watermark_s), "heartbeats"
        )

    async def _decide_due(self) -> None:
        """Decide the days the complete time completed without new input: when the last
        partitions with a backlog catch up, the complete time moves to the newest event time,
        and nothing else would run the step."""
        await self._heartbeat()
        await self._shadow_mark()
        if self.engine.watermark_s is None:
            return
        t = self._decision_time()
        if t is None:
            return
        if self.step.decided is not None and self.step.due(t) <= self.step.decided and not self.step.deciding:
            return
        res = self._run_step(Batch.empty(), t)
        await self._emit(res)
        self._dirty_partitions.update(self.active_partitions())
        self.metrics.observe_alarms(res.alarms)

    def _run_step(self, *args):
        """The batch step, with a warning where days are skipped (where decisions start is
        logged by _decision_time)."""
        before = self.step.decided
        res = self.step(*args)
        if res.decided and before is not None and res.decided[0] != before + 1:
            logger.warning("days %d..%d were not decided", before + 1, res.decided[0] - 1)
        return res

    def _advance_partition_time(self, batch, apply_rejects, tp_first: dict[TP, int]) -> None:
        """Each input partition's event time: the newest ts it delivered that the engine
        accepted. Rejected events (late, future, invalid) never move time. ``tp_first``: each
        partition's first raw index in the round (its records follow, partition after partition)."""
        if not len(batch) or not tp_first:
            return
        idx, ts = batch.idx, batch.ts
        if apply_rejects:
            ok = ~np.isin(idx, np.fromiter((r.index for r in apply_rejects), dtype=np.int64))
            idx, ts = idx[ok], ts[ok]
        if not len(idx):
            return
        tps = list(tp_first)
        starts = np.fromiter(tp_first.values(), dtype=np.int64, count=len(tps))
        newest = np.full(len(tps), -np.inf)
        np.maximum.at(newest, np.searchsorted(starts, idx, side="right") - 1, ts)
        wm = self._tp_watermark
        for j in np.flatnonzero(np.isfinite(newest)).tolist():
            tp, t = tps[j], float(newest[j])
            if t > wm.get(tp, float("-inf")):
                wm[tp] = t

    def _behind(self) -> dict[TP, int | None]:
        """Per input partition this worker owns: messages on the broker it has not processed yet
        (high watermark of the last fetch minus the next offset to process), None when not known
        yet (no fetch answered, or no position learned since the start or the last rebalance)."""
        consumer = self.app.consumer
        out: dict[TP, int | None] = {}
        try:
            assigned = consumer.assignment()
        except Exception:  # noqa: BLE001 - not started yet
            return out
        for tp in assigned:
            if tp.topic not in self._src_index:
                continue
            try:
                hw = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not fetched yet
                hw = None
            n = self._processed_next.get(tp)
            out[tp] = None if hw is None or n is None else max(0, hw - n)
        return out

    def _backlog(self) -> dict[TP, bool | None]:
        """Per input partition this worker owns: True when the broker holds messages it has not
        processed, False when it is caught up, None when not known yet."""
        return {tp: None if n is None else n > 0 for tp, n in self._behind().items()}

    def _complete_time(self, fresh: bool = True) -> float | None:
        """The event time up to which every input partition of this worker is complete (a
        watermark, as Flink and Beam take it: the minimum over the inputs): the slowest partition
        that still has a backlog sets it; caught-up partitions do not hold it back. A partition
        with a backlog whose time is not known yet (nothing of it read since the start or the
        last rebalance) holds everything back: None, nothing is judged. Kafka hands out one
        topic's backlog ahead of another's (calls days ahead of SMS while catching up, or after a
        stall); judging at the newest time would read the missing SMS as a traffic drop.

        Caught up means caught up after the latest input arrived (``fresh``, :meth:`_verify_idle`):
        a partition's high watermark is the one of its last fetch, and a producer's records for
        one partition reach the worker before those it sent beside them for another. Judged at
        the newest time of the first, a day was decided without the second's (a loyal subscriber
        silent for 9 days, test_shadow_service.py under load, 2026-12-07)."""
        fr, unknown = self._frontiers(fresh)
        if unknown:
            return None
        if fr:
            return min(fr.values())
        # every partition caught up: the newest event time of any, as one worker holding them all
        # would have it (a worker whose own partitions are quiet decides its subscribers' days
        # as the others' events move event time on: the same alarms for any worker count)
        wm = self.engine.watermark_s
        peers = max(self._peer_newest.values(), default=None)
        return peers if wm is None else wm if peers is None else max(wm, peers)

    def _verified_idle(self, tp: TP) -> bool:
        """Whether an end-offset request sent after the latest input arrived found ``tp`` caught
        up (and nothing of it is on wait here)."""
        return tp not in self._held_ts and self._idle_at.get(tp, -math.inf) >= self._input_at

    async def _verify_idle(self) -> bool:
        """Ask the broker for the end offsets of the caught-up input partitions not verified
        since the latest input arrived: at once when that holds a day's decision back (about once
        per event-time day), else at most every ``VERIFY_EVERY_S`` (the decision time a worker
        reports and persists, and the partitions it reports idle to the others: :meth:`_report`).
        Returns whether it asked."""
        if self._fenced or not self._recovered_once:
            return False
        tps = [
            tp
            for tp, behind in self._backlog().items()
            if behind is False and tp not in self._held_ts and not self._verified_idle(tp)
        ]
        if not tps:
            return False
        optimistic = self._complete_time(fresh=False)
        held = self._complete_time()
        day_waits = False
        if optimistic is not None and (held is None or held < optimistic):
            due = self.step.due(optimistic)
            day_waits = (self.step.decided is None or due > self.step.decided) and (
                held is None or self.step.due(held) < due
            )
        # (after a failed request, the next one waits too: a broker away answers nothing)
        if (not day_waits or not self._verify_ok) and time.monotonic() - self._verified_at < VERIFY_EVERY_S:
            return False
        self._verified_at = sent = time.monotonic()
        self._verify_ok = False
        try:
            ends = await asyncio.wait_for(self._end_offsets(tps), VERIFY_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the broker away: the partitions keep holding back
            logger.debug("end offsets of %d partitions not known: %r", len(tps), exc)
            self.metrics.idle_checks.labels("failed").inc(len(tps))
            return False
        self._verify_ok = True
        caught_up = 0
        for tp in tps:
            n, end = self._processed_next.get(tp), ends.get(tp)
            if n is not None and end is not None and end <= n:
                self._idle_at[tp] = sent
                caught_up += 1
        self.metrics.idle_checks.labels("caught_up").inc(caught_up)
        if caught_up < len(tps):
            self.metrics.idle_checks.labels("behind").inc(len(tps) - caught_up)
        return True

    async def _end_offsets(self, tps: list[TP]) -> dict[TP, int]:
        return dict(await self.app.consumer.highwaters(*tps))

    async def _resume_check(self, records: dict[TP, list]) -> dict[TP, list]:
        """The first fetch of each input partition after a recovery must start at the group's
        committed offset, or its log's start without one (:meth:`_resume_offsets`): the state
        holds nothing after it. One that starts past it is dropped and the partition sought back,
        once (a log whose start moved past the commit, by retention, is then read from where it
        starts). A net: the two ways positions moved past unprocessed records around a recovery
        (README, "Exact after a crash") are fixed where they happened."""
        out = {}
        for tp, recs in records.items():
            expected = self._resume_at.pop(tp, None)
            if expected is None or not recs or recs[0].offset <= expected:
                out[tp] = recs
                continue
            logger.warning(
                "input %s[%d]: the first fetch after a recovery starts at offset %d, past the committed %d: sought back",
                tp.topic,
                tp.partition,
                recs[0].offset,
                expected,
            )
            self.metrics.input_gaps.labels(topic=tp.topic).inc()
            await self.app.consumer.seek(tp, expected)
        return out

    async def _learn_positions(self, records: dict[TP, list]) -> None:
        """The start position of an owned input partition that the recovery did not give one
        (:meth:`_resume_offsets` gives every partition it recovered one): the first record's
        offset where this batch has one, else the consumer's position."""
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic not in self._src_index or tp in self._processed_next:
                continue
            recs = records.get(tp)
            if recs:
                self._tp_next[tp] = self._processed_next[tp] = recs[0].offset
                continue
            try:
                pos = await consumer.position(tp)
            except Exception:  # noqa: BLE001 - not assigned any more, or no position yet
                pos = None
            if pos is not None:
                self._tp_next[tp] = self._processed_next[tp] = pos

    def _align(self) -> None:
        """Event-time alignment: pause the input partitions that hold records on wait, and those
        more than ``max_skew_s`` ahead of the slowest partition that still has a backlog; resume
        the others. A backlog is then read in event-time order across partitions and topics
        (within the skew), so no subscriber's calls run weeks ahead of its SMS, whatever order
        Kafka hands the partitions out in."""
        consumer = self.app.consumer
        limit = self._align_limit()
        pause = set(self._held)
        if limit is not None:
            assigned = consumer.assignment()
            pause |= {tp for tp, t in self._tp_watermark.items() if t > limit and tp in assigned}
        resume = self._paused - pause
        new = pause - self._paused
        if resume:
            consumer.resume_partitions(resume)
        if new:
            consumer.pause_partitions(new)
        self._paused = pause
        self.metrics.paused_partitions.set(len(pause))

    def _evidence(self, msgs) -> tuple[list[dict], list[tuple[int, Any]]]:
        """The evidence topic's envelopes: the second-SIM join's candidates (``"e"``), other
        workers' handset switches (``"s"``, with the partition they were read from) and their
        complete times (``"w"``, recorded here). An unreadable entry is counted and skipped."""
        out: list[dict] = []
        switches: list[tuple[int, Any]] = []
        for m in msgs:
            try:
                env = orjson.loads(m.value)
                if "mark" in env:  # the join's barrier: a bands partition answered up to a day
                    stage, at = parse_mark(env, self.settings.partitions)
                    if stage != 2:
                        raise ValueError(f"a stage {stage} mark on the evidence topic")
                    self._shadow_marks.note(m.partition, at)
                    continue
                if not ("e" in env or "s" in env or "w" in env):
                    raise ValueError("nothing in the envelope")
                entries = env.get("e", [])
                if "s" in env:
                    switches.extend((m.partition, sw) for sw in parse_switches(env["s"]))
                # the latest report, not the highest: a partition idle until now (IDLE_TIME) holds
                # time back again once it has events; an older report read again (a replay, a new
                # owner behind the last) only delays decisions (_decision_time never goes back)
                times = parse_times(env.get("w", []), self.settings.partitions)
                newest = parse_newest(env["n"]) if "n" in env else None  # (all parsed before any is kept)
                for p, t in times:
                    self._peer_time[p] = t
                    if newest is not None:
                        self._peer_newest[p] = newest
            except (orjson.JSONDecodeError, TypeError, AttributeError, ValueError):
                self.metrics.shadow_bad.labels(topic=m.topic).inc()
                continue
            for ev in entries if isinstance(entries, list) else ():
                try:
                    out.append(
                        {
                            "s": str(ev["s"]),
                            "x": int(ev["x"]),
                            "sig": [int(v) for v in ev["sig"]],
                            "first": int(ev["first"]),
                            "last": int(ev["last"]),
                            "day": int(ev["day"]),
                        }
                    )
                except (TypeError, KeyError, ValueError):
                    self.metrics.shadow_bad.labels(topic=m.topic).inc()
        return out, switches

    async def _keep_switches(self, switches: list[tuple[int, Any]]) -> None:
        """Persist the latest switches this worker read, in every table partition they were read
        from (each evidence partition carries every switch), so that whoever owns a partition next
        has them, whichever partitions it holds; a number's earlier latest switch is deleted there.
        Acknowledged before the next commit, like every send."""
        items: list[tuple[bytes, int, bytes | None]] = []
        kept = self._remote_switches
        for p, sw in switches:
            if not sw.flags & LATEST:
                continue
            if sw.old and sw.old != sw.imei:
                old = (switch_key(sw.old, sw.msisdn), p)
                if kept.pop(old, None) is not None:
                    items.append((old[0], p, None))
            key = switch_key(sw.imei, sw.msisdn)
            if (key, p) not in kept:
                kept[(key, p)] = sw.day
                items.append((key, p, PART.pack(p) + orjson.dumps(sw.day)))
        await self._write_switches(items)

    async def _expire_switches(self, day: int) -> None:
        """Delete the kept switches too old to give evidence to a decision from ``day`` on (as the
        engine forgets them: ``Engine.decide_candidates``); without it the table kept every
        number's latest switch for good, in every partition."""
        lo = day - self.engine_config.dual_sim_days + 1
        kept = self._remote_switches
        old = [kp for kp, d in kept.items() if d < lo]
        for kp in old:
            del kept[kp]
        await self._write_switches([(key, p, None) for key, p in old])

    async def _write_switches(self, items: list[tuple[bytes, int, bytes | None]]) -> None:
        if items and not self._fenced:
            by = put_many(self.table, items, self.settings.topic_calls)
            self._inflight += await self.producer.send_batches(self._changelog_topic, by)
        self.metrics.handset_switches.set(len(self._remote_switches))

    # ----------------------------------------------------------- checkpoint
    def _due(self) -> bool:
        """A checkpoint is due every ``commit_interval_s``, or after ``commit_every`` events while
        catching up (large checkpoints: fewer state writes per event), or after at most
        ``LIVE_COMMIT_EVERY`` events when live (small ones: a checkpoint's burst of state writes
        never keeps alarms waiting long; measured p99 produce→alarm 2.27 s → 0.23 s at 8k ev/s)."""
        s = self.settings
        if self._fenced or not (self._pending_next or self._dirty):
            return False
        if time.monotonic() - self._last_checkpoint >= s.commit_interval_s:
            return True
        if self._since_checkpoint < min(s.commit_every, LIVE_COMMIT_EVERY):
            return False
        return self._since_checkpoint >= s.commit_every or not self._catching_up()

    def _catching_up(self) -> bool:
        """Whether the input partitions this worker owns are more than ``commit_every`` messages
        behind their high watermarks (as of the last fetch)."""
        return sum(n for n in self._behind().values() if n) > self.settings.commit_every

    async def _checkpoint_timer(self) -> None:
        """Checkpoint at the interval also when no new input arrives (an idle or paused worker)."""
        while True:
            await asyncio.sleep(min(1.0, self.settings.commit_interval_s))
            if self._due():
                try:
                    async with self._lock:
                        if self._due():
                            await self.checkpoint()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.fatal("checkpoint")

    async def _watchdog(self) -> None:
        """Log every task's await chain once when the processing lock has been held for over 30 s
        (a wait that never ends: the chains name it)."""
        held_since = None
        while True:
            await asyncio.sleep(5)
            await self._probe_broker()
            if (
                self._fenced
                and self._fence_reason
                in ("left the group", "recovery incomplete")  # (not a revocation: its rebalance is under way)
                and time.monotonic() - self._fenced_at >= 2 * self.settings.session_timeout_s
                and not getattr(self.app, "rebalancing", False)
            ):
                self._rejoin()  # no recovery came after the fence: ask for it again
            if not self._lock.locked():
                held_since, self._stuck_reported = None, False
                continue
            now = time.monotonic()
            held_since = held_since or now
            if now - held_since >= 30 and not self._stuck_reported:
                self._stuck_reported = True
                self._log_tasks(now - held_since)

    def _rejoin(self) -> None:
        """Ask the group for a rebalance, so that a recovery follows the fence (at most once per
        session timeout). A worker fenced because its membership check got no answer (a paused
        broker) may still be a member the group never expired: without it, no rebalance came and
        the worker stayed fenced for good (1 of 3 fresh-clone runs of `test_broker_pause.py` on
        2026-12-07: `fenced`, `recovering` for 190 s)."""
        now = time.monotonic()
        if now - self._rejoin_at >= self.settings.session_timeout_s and request_rejoin(self.app):
            self._rejoin_at = now
            logger.warning("fenced: asked the consumer group for a rebalance (a recovery follows it)")

    async def _probe_broker(self) -> None:
        """When nothing else showed the broker alive for 5 s (an idle worker), ask it for metadata."""
        if time.monotonic() - self._broker_ok_at >= 5:
            try:
                await self.producer.fetch_metadata(timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - unreachable, timed out, not started: the age tells
                pass
            else:
                self._broker_ok_at = time.monotonic()
        self.metrics.broker_reachable.set(
            0 if time.monotonic() - self._broker_ok_at > self.settings.broker_down_s else 1
        )

    def _log_tasks(self, held_s: float) -> None:
        lines = []
        for task in asyncio.all_tasks():
            chain, coro = [], task.get_coro()
            while coro is not None and len(chain) < 24:  # the await chain, outermost first
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                if frame is not None:
                    chain.append(
                        f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno}:{frame.f_code.co_name}"
                    )
                coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            lines.append(f"task {task.get_name()}: " + " -> ".join(chain))
        lines += self.producer.queue_report()  # the producer's queue: what a send waits for
        logger.warning("the processing lock has been held for %.0fs; task await chains:\n%s", held_s, "\n".join(lines))

    async def checkpoint(self) -> None:
        """Make everything processed so far durable, then commit its offsets. The order:

        1. the state of every subscriber changed since the last checkpoint (one coalesced snapshot
           each, however many batches touched it) and, for each partition, where decisions
           stand (the decision time and the last day decided in full: _watermark_items) →
           changelog messages (and, every ``store_flush_s``, the table's local store: see
           _write_state);
        2. every send since the last checkpoint (alarms, dead letters, the join's messages) and
           the changelog messages of 1 awaited until the broker acknowledged them (acks=all);
        3. only then are the input offsets committed (the next offset of the last batch
           processed, per partition), and ``churnwatch_consumer_position`` moves.

        The acknowledgements of 2 and the commit of 3 run in the background while the next
        batches are fetched and processed; at most one checkpoint is in flight (the next one
        waits for it), so commits stay in order. A crash anywhere before 3 leaves the offsets
        uncommitted: the input is consumed again from the previous commit, and each subscriber's
        per-source offset (in the state written at 1) skips what was already applied."""
        if self._ckpt_task is not None:
            t0 = time.perf_counter()
            await self._ckpt_task  # one in flight: commits never overtake each other
            self.metrics.checkpoint_wait.inc(time.perf_counter() - t0)
            self._ckpt_task = None
        if self._fenced:
            return
        if not await self._still_member():
            self._fence("left the group")  # frozen past the session timeout: its partitions went to another worker
            self._rejoin()
            return
        rows = np.unique(np.concatenate(self._dirty)) if self._dirty else np.empty(0, dtype=np.int64)
        changelog, flushed = await self._write_state(rows, self._dirty_partitions)
        sends, self._inflight = self._inflight, []
        offsets, self._pending_next = self._pending_next, {}
        self._dirty, self._dirty_partitions = [], set()
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._ckpt_task = asyncio.ensure_future(
            self._complete_checkpoint(changelog, sends, offsets, self._generation, flushed)
        )

    async def _complete_checkpoint(
        self, changelog: list, sends: list, offsets: dict, generation: int, flushed: bool
    ) -> None:
        try:
            t0 = time.perf_counter()
            results = await asyncio.gather(*changelog, *sends)
            if flushed:  # the local store holds the changelog up to these offsets (see _write_state)
                mark_persisted(self.table, results[: len(changelog)])
            if any(tp.topic in self._src_index for tp in offsets):
                self.metrics.checkpoint_inflight.set(1)  # state durable, input offsets not committed yet
            if generation == self._generation:  # not across a rebalance (positions were reset)
                self._tp_next.update(offsets)  # durable now: churnwatch_consumer_position moves
            if self.settings.checkpoint_hold_s:
                await asyncio.sleep(self.settings.checkpoint_hold_s)  # fault injection (tests)
            self.metrics.checkpoint_inflight.set(0)
            sent_at = time.monotonic()
            ok = await self.app.consumer.commit_offsets(offsets) if offsets else True
            if ok and offsets:
                self._broker_ok_at = time.monotonic()
                if generation == self._generation and not self._fenced:
                    self._member_ok_at = sent_at
            elif not ok and generation == self._generation:
                self._fence("commit refused")  # rebalanced meanwhile: a recovery follows, which replays
                return
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - t0)
            self.metrics.checkpoints.inc()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.fatal("checkpoint")

    async def _still_member(self) -> bool:
        """Whether this worker still belongs to the consumer group's current generation, asked of
        the group coordinator by committing the offsets that are durable already (no change to
        them). A worker frozen past the session timeout (SIGSTOP, a GC pause, a starved container)
        learns here, before it writes any state, that its partitions went to another worker: a
        late write would overwrite the new owner's newer state in the changelog.

        Not asked again within a sixth of the session timeout of a commit the coordinator accepted
        (this question's, or a checkpoint's): the group cannot have expired a member that recent
        (a freeze long enough to lose the partitions is longer than the session timeout), and a
        rebalance others start revokes the partitions here first (``on_revoke``: a checkpoint,
        then the fence). Until 2026-12-07 every checkpoint asked: two commits per checkpoint, at
        up to 14 checkpoints/s of live traffic (py-spy at 28,000 events/s: ~5% of the worker's
        samples in Faust's commit path)."""
        offsets = dict(self._tp_next)
        if not offsets:
            return True
        sent_at = time.monotonic()
        if sent_at - self._member_ok_at < self.settings.session_timeout_s / 6:
            return True
        try:
            ok = await asyncio.wait_for(
                self.app.consumer.commit_offsets(offsets), timeout=self.settings.session_timeout_s / 3
            )
        except TimeoutError:
            return False  # no answer in time: write nothing (a replay from the last commit is exact)
        if ok:
            self._member_ok_at = sent_at
        return ok

    def _fence(self, reason: str) -> None:
        """Stop writing state and committing until the next recovery rebuilds the engine from the
        table (what was processed since the last checkpoint is replayed by the partitions'
        owners from their committed offsets)."""
        self._member_ok_at = -math.inf  # the next checkpoint after a recovery asks again
        if not self._fenced:
            self._fenced_at = time.monotonic()
            self._fence_reason = reason
            level = logging.INFO if reason == "partitions revoked" else logging.WARNING
            logger.log(level, "fenced (%s): no state writes or commits until the next recovery", reason)
            self.metrics.fenced.labels(reason=reason).inc()
        self._fenced = True
        self._resume_at = {}
        self._dirty, self._dirty_partitions, self._pending_next, self._since_checkpoint = [], set(), {}, 0

    async def on_revoke(self, revoked: set[TP]) -> None:
        """First thing in a rebalance, while this worker still owns its partitions: a last
        checkpoint (state of every changed subscriber, acknowledged, then the offsets committed),
        then the fence. The group waits for this before it hands the partitions to another
        worker, so their new owner restores the newest state, and nothing this worker still has
        in flight can overwrite it later."""
        async with self._lock:
            if not self._fenced and not self.app.should_stop:  # (stopping: the consumer thread is going away)
                await self.checkpoint()
                task = self._ckpt_task
                if task is not None:
                    # bounded: the group waits for this member (a checkpoint not done in time is
                    # replayed by the new owner from the last commit)
                    done, _ = await asyncio.wait({task}, timeout=self.settings.session_timeout_s / 2)
                    if done:
                        self._ckpt_task = None
                    else:
                        logger.warning(
                            "the last checkpoint before the rebalance did not finish in %.0fs",
                            self.settings.session_timeout_s / 2,
                        )
            self._fence("partitions revoked")

    async def _write_state(self, rows: np.ndarray, partitions: set[int]) -> tuple[list, bool]:
        """Send the state of ``rows`` to the changelog, each in its subscriber's partition, and
        the worker's event time to each of ``partitions`` (so a restarted or new owner never
        evaluates at an earlier time). Returns the changelog send futures, and whether the local
        store was flushed with them.

        The table's local store (RocksDB) is written at most every ``store_flush_s``: then with
        the state of every subscriber sent since the last flush (coalesced: one write each,
        however many checkpoints sent it), and only then are the changelog offsets recorded as
        persisted (after this checkpoint's acknowledgements). At a checkpoint every engine row
        holds exactly the state of its newest changelog message, so the flushed store is the
        changelog up to those offsets; a restart restores the store and replays the changelog
        after them (at most ``store_flush_s`` of checkpoints)."""
        topic = self.settings.topic_calls
        # (every partition whose offsets this checkpoint commits gets its item: recovery_gaps)
        partitions = partitions | {tp.partition for tp in self._pending_next if tp.topic in self._src_index}
        kept, changelog, grouped = self._state_items(rows)
        if time.monotonic() - self._flushed_at >= self.settings.store_flush_s:
            # a row's newest item is its state now: every change marks the row dirty, and every
            # checkpoint sends its dirty rows (until 2026-12-02 the flush took every such row's
            # snapshot again: on a catch-up of a million subscribers, ~0.75 more per one sent)
            local = newest_items([*self._unflushed, (kept, changelog)])
            put_many(self.table, local + self._watermark_items(partitions | self._unflushed_partitions), topic)
            self._unflushed, self._unflushed_partitions = [], set()
            self._flushed_at = time.monotonic()
            self.metrics.store_flush_states.inc(len(local))
            flushed = True
        else:
            self._unflushed.append((kept, changelog))
            self._unflushed_partitions |= partitions
            flushed = False
        n_sent = len(kept)
        self.metrics.checkpoint_states.inc(n_sent)
        for key, p, value in self._watermark_items(partitions):
            grouped.setdefault(p, []).append((key, value))
        return await self.producer.send_batches(self._changelog_topic, grouped), flushed

    def _learn_partitions(self, rows: np.ndarray, parts: np.ndarray) -> None:
        """Record the input partition of each engine row in ``rows`` (-1: none, skipped): its
        state table partition. A subscriber's events all come keyed by it, so from one partition."""
        ok = rows >= 0
        if not ok.any():
            return
        rows, parts = rows[ok], parts[ok]
        top = int(rows.max())
        if top >= len(self._row_part):
            grown = np.full(max(top + 1, 2 * len(self._row_part), 1024), -1, dtype=np.int32)
            grown[: len(self._row_part)] = self._row_part
            self._row_part = grown
        self._row_part[rows] = parts

    def _state_items(self, rows: np.ndarray) -> tuple[np.ndarray, list, dict[int, list]]:
        """The rows of ``rows`` in a partition of ours (ordered by partition), their ``(key,
        partition, value)`` table items in that order (values: the 2-byte partition, then the
        snapshot), and the same ``(key, value)`` pairs grouped by partition, as the changelog
        takes them (cut from the ordered columns: no Python step per item)."""
        eng = self.engine
        rows = np.asarray(rows, dtype=np.int64)
        known = self._row_part
        parts = np.full(len(rows), -1, dtype=np.int32)
        inside = rows < len(known)
        parts[inside] = known[rows[inside]]
        keep = parts >= 0  # never seen in a batch of ours: nothing to persist
        if not keep.any():
            return rows[:0], [], {}
        kept, kept_parts = rows[keep], parts[keep]
        # the snapshots taken in the rows' order (ascending: the checkpoint's np.unique; the gather
        # then walks the state arrays forward: 1.9 against 2.4 µs per row in partition order,
        # 10,000-30,000 rows of a 100k-subscriber engine), then put in partition order
        prefix = kept_parts.astype(">u2").view(np.uint8).reshape(-1, PART.size)
        snaps = eng.snapshot_many(kept, prefix=prefix)
        order = np.argsort(kept_parts, kind="stable")
        values = [snaps[i] for i in order.tolist()]
        kept, kept_parts = kept[order], kept_parts[order]
        keys = "\n".join(eng.msisdns(kept)).encode().split(b"\n")  # (msisdns are digits) one encode, not one each
        cuts = np.flatnonzero(np.diff(kept_parts)) + 1
        starts, ends = [0, *cuts.tolist()], [*cuts.tolist(), len(kept)]
        grouped = {
            int(kept_parts[a]): list(zip(keys[a:b], values[a:b], strict=True))
            for a, b in zip(starts, ends, strict=True)
        }
        return kept, list(zip(keys, kept_parts.tolist(), values, strict=True)), grouped

    def _watermark_items(self, partitions: set[int]) -> list:
        """Where decisions stand, for each of ``partitions``: the decision time and the last day
        decided in full (a day decided in parts is not: a restarted owner decides it again,
        which changes nothing for the subscribers already decided), and the input offsets this
        checkpoint commits (with those of the sources it has not read since: every offset
        committed for the partition), which a recovery checks the table against
        (:func:`recovery_gaps`)."""
        wm, decided = self._decide_s, self.step.decided
        pending: dict[int, dict[int, int]] = {}
        for tp, nxt in self._pending_next.items():
            si = self._src_index.get(tp.topic)
            if si is not None:
                pending.setdefault(tp.partition, {})[si] = nxt
        head = _WM.pack(math.nan if wm is None else wm) + _DECIDED.pack(NO_DECIDED if decided is None else decided)
        out = []
        for p in sorted(partitions):
            offs = self._item_offsets.setdefault(p, {})
            offs.update(pending.get(p, {}))
            tail = _NOFF.pack(len(offs)) + b"".join(_OFF.pack(si, o) for si, o in sorted(offs.items()))
            out.append((WATERMARK_KEY, p, PART.pack(p) + head + tail))
        return out

    @property
    def _changelog_topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    async def _send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None):
        """Hand one message to the producer; returns a future resolved on the broker's ack."""
        return await self.producer.send(topic, key, value, partition)

    async def _send_deadletter(self, tp: TP, msg, reject) -> Any:
        """Dead-letter input record ``msg`` read from ``tp`` (aiokafka's record: no topic or partition of its own)."""
        value = msg.value or b""
        record = {
            "original_b64": base64.b64encode(value[:DEADLETTER_ORIGINAL_MAX]).decode("ascii"),
            "key_b64": base64.b64encode(msg.key).decode("ascii") if msg.key is not None else None,
            "topic": tp.topic,
            "partition": tp.partition,
            "offset": msg.offset,
            "reason": reject.reason,
            "detail": reject.detail,
            "failed_at": self.clock(),
            "schema_version": SCHEMA_VERSION,
        }
        if len(value) > DEADLETTER_ORIGINAL_MAX:  # always fits the producer's request limit (base64 grows 4/3)
            record.update(
                original_truncated=True, original_size=len(value), original_sha256=hashlib.sha256(value).hexdigest()
            )
        logger.debug("dead letter %s[%d]@%d: %s (%s)", tp.topic, tp.partition, msg.offset, reject.reason, reject.detail)
        return await self._send(self.settings.topic_deadletter, msg.key, orjson.dumps(record))

    def _observe(self, n: int, before: dict, rejects, alarms, seconds: float) -> None:
        m = self.metrics
        after = self.engine.counters
        for name, value in after.items():
            delta = value - before.get(name, 0)
            if not delta:
                continue
            if name.startswith("applied_"):
                m.events.labels(type=name[len("applied_") :]).inc(delta)
            elif name == "skipped":
                m.replayed.inc(delta)
            elif name == "handset_evidence_remote":
                m.handset_evidence.inc(delta)
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

    def health(self) -> dict:
        """Liveness that tells the truth: input partitions that hold a backlog and made no
        progress for ``stall_s`` seconds (not counting those paused by the event-time alignment)."""
        now = time.monotonic()
        stalled = []
        for tp, behind in self._backlog().items():
            if (
                behind
                and tp not in self._paused
                and now - self._progress_at.get(tp, self._recovered_at) > self.settings.stall_s
            ):
                stalled.append(f"{tp.topic}[{tp.partition}]")
        self.metrics.stalled_partitions.set(len(stalled))
        broker_age = now - self._broker_ok_at
        limit = self._align_limit()
        fr, unknown = self._frontiers()
        slowest = sorted(fr.items(), key=lambda kv: kv[1])[:3]
        # fenced and no recovery for twice the session timeout: the rebalance that should follow
        # a fence never came (a lost member that was not told): restarting the worker recovers it
        fenced_s = now - self._fenced_at if self._fenced else 0.0
        stuck_fenced = fenced_s > 2 * self.settings.session_timeout_s
        status = (
            "broker_unreachable"
            if broker_age > self.settings.broker_down_s
            else "fenced"
            if stuck_fenced
            else "stalled"
            if stalled
            else "ok"
        )
        return {
            "status": status,
            "broker_answered_s_ago": round(broker_age, 1),
            "recovering": self.recovering(),
            "fenced_s": round(fenced_s, 1),
            "subscribers": len(self.engine),
            "partitions": sorted(self.active_partitions()),
            "stalled_partitions": sorted(stalled),
            "paused_partitions": len(self._paused),
            "held_partitions": len(self._held),
            "event_time": self._eval_time,
            "decided_time": self._decide_s,  # (held back to the other workers' reported time: peer_time)
            "peer_time": self._peer_gate(),
            # ... and to the day the second-SIM join has answered (None: not yet)
            "shadow_day": self._shadow_day(),
            # input partitions no worker has reported a time for (every worker's decisions wait)
            "unreported_partitions": [p for p in range(self.settings.partitions) if p not in self._peer_time],
            # ... and the one whose reported time is the least (it sets peer_time)
            "slowest_reported_partition": min(self._peer_time, key=self._peer_time.get) if self._peer_time else None,
            "complete_time": self._complete_time(),
            # feed outages among the days the latest decision read (void_fraction: left out of it)
            "void_dates": [self.engine.config.date_of_day(d) for d in self._void],
            "align_limit": "waiting for a partition" if limit == -math.inf else limit,
            # the partitions holding event time back: name, next event time, held here, paused
            "slowest_partitions": [
                [f"{tp.topic}[{tp.partition}]", t, tp in self._held, tp in self._paused] for tp, t in slowest
            ],
            "unknown_partitions": sorted(f"{tp.topic}[{tp.partition}]" for tp in unknown),
        }

    # ------------------------------------------------------------- recovery
    def recovering(self) -> bool:
        """True before the first recovery, between a revocation and the rebuild that follows it
        (the engine does not hold the partitions' state yet), and while Faust rebalances."""
        return not self._recovered_once or self._fenced or bool(getattr(self.app, "rebalancing", False))

    def active_partitions(self) -> set[int]:
        topic = self.settings.topic_calls
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    async def _on_recover(self) -> None:
        """After a rebalance: rebuild the engine from the table's partitions this worker owns.
        What was processed since the last checkpoint is dropped with the old engine: Faust seeks
        every input partition to its committed offset next, and the replay rebuilds it."""
        if self.settings.recovery_hold_s:
            await asyncio.sleep(self.settings.recovery_hold_s)  # fault injection (tests): a slow restore
        async with self._lock:
            await self._rebuild()

    async def _committed(self, actives: set[int]) -> dict[tuple[int, int], int | None] | None:
        """The group's committed offsets of the input partitions ``actives`` ((partition, source
        index) -> offset), None when the coordinator did not answer."""
        tps = [TP(t, p) for t in self.settings.input_topics for p in sorted(actives)]
        try:
            got = await asyncio.wait_for(committed_offsets(self.app, tps), timeout=2 * VERIFY_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("recovery: the committed offsets could not be read", exc_info=True)
            return None
        return {(tp.partition, self._src_index[tp.topic]): off for tp, off in got.items()}

    async def _resume_offsets(self, committed: dict[tuple[int, int], int | None]) -> dict[TP, int]:
        """Where each input partition resumes after a recovery: its committed offset, or where its
        log starts when nothing was committed (0 when the broker does not say: a log whose start
        moved on is then reported as a gap at the first fetch)."""
        topics = self.settings.input_topics
        out = {TP(topics[si], p): c for (p, si), c in committed.items() if c is not None}
        fresh = [TP(topics[si], p) for (p, si), c in committed.items() if c is None]
        starts: dict[TP, int] = {}
        if fresh:
            try:
                got = await asyncio.wait_for(self.app.consumer.earliest_offsets(*fresh), timeout=VERIFY_TIMEOUT_S)
                starts = {TP(tp.topic, tp.partition): off for tp, off in got.items() if off is not None}
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the broker away: from offset 0
                logger.warning("recovery: the log start offsets could not be read", exc_info=True)
        for tp in fresh:
            out[tp] = starts.get(tp, 0)
        return out

    def _refuse_recovery(self, gaps: list | None) -> None:
        """The state table recovered does not cover the committed offsets (``gaps``: see
        :func:`recovery_gaps`; None: they could not be read): going on would replay the input from
        the commits over a state that lacks what came before them. Stay fenced and ask for
        another recovery (the watchdog asks again every two session timeouts while none comes)."""
        logger.error(
            "recovery incomplete: the state table does not cover the committed input offsets "
            "(partition, source, committed, recorded) %s; fenced, asking for another recovery",
            "not read" if gaps is None else gaps[:8],
        )
        self.metrics.fenced.labels(reason="recovery incomplete").inc()
        self._fenced, self._fence_reason, self._fenced_at = True, "recovery incomplete", time.monotonic()
        self._rejoin()  # (at most once per session timeout: refused recoveries in a row would rebalance the group 4 times a second)

    async def _rebuild(self) -> None:
        t0 = time.perf_counter()
        actives = self.active_partitions()
        engine = Engine(self.engine_config, clock=self.clock)
        engine.route_handsets = True  # its handset switches go to every worker (handsets.py)
        restored: list[str] = []
        payloads: list[bytes] = []  # the snapshots of restored[-len(payloads):], not restored yet
        parts: list[int] = []
        marks: list[tuple[float | None, int | None]] = []  # per watermark item: (decision time, last day decided)
        recorded: dict[int, dict[int, int] | None] = {}  # per partition: the offsets its watermark item records
        remote: dict[tuple[bytes, int], int] = {}
        for key, p, payload in owned_items(self.table, actives):
            if key == WATERMARK_KEY:
                marks.append(parse_watermark(payload))
                recorded[p] = watermark_offsets(payload)
                continue
            if key.startswith(SWITCH_PREFIX):  # another worker's handset switch (handsets.py)
                remote[(key, p)] = orjson.loads(payload)
                continue
            restored.append(key.decode())
            payloads.append(payload)
            parts.append(p)
            if len(payloads) >= RESTORE_CHUNK:  # (the snapshots themselves held a chunk at a time)
                engine.restore_many(list(zip(restored[-len(payloads) :], payloads, strict=True)))
                payloads = []
                await asyncio.sleep(0)  # (the web views and Faust's own tasks run between chunks)
        engine.restore_many(list(zip(restored[len(restored) - len(payloads) :], payloads, strict=True)))
        n = len(restored)
        committed = await self._committed(actives)
        gaps = recovery_gaps(committed, recorded) if committed is not None else None
        if gaps is None or gaps:
            self._refuse_recovery(gaps)
            return
        # the offsets the next watermark items carry: all those committed, as far as the table covers them
        self._item_offsets = {}
        for (p, si), c in committed.items():
            if c:
                self._item_offsets.setdefault(p, {})[si] = c
        for p, offs in recorded.items():
            self._item_offsets.setdefault(p, {}).update(offs or {})
        # where each input partition resumes: its committed offset, or the log's start without one
        resume = await self._resume_offsets(committed)
        for (key, _), day in remote.items():
            h, m = parse_switch_key(key)
            engine.add_switch(h, m, day)  # (a number this engine holds has its own)
        self._remote_switches = remote
        self.metrics.handset_switches.set(len(remote))
        wms = [wm for wm, _ in marks if wm is not None]
        if wms:
            engine.advance_watermark(max(wms))
        # each partition's complete time and last day decided, as its last owner wrote them:
        # decisions resume after the earliest day (a partition taken over from a worker that was
        # behind has days to decide); subscribers decided for a day already skip it (their
        # dec_day), so no day is decided twice, none skipped, and one a crash cut short is finished.
        # Items written before 2026-12-07 carry no day: the day before their time's (that day is
        # decided again). Decisions that had not begun (NaN time) begin where their day says.
        complete = min(wms) if wms else None
        self._eval_time = self._decide_s = complete
        self._heartbeat_sent = None
        self._shadow_marks.clear()  # (read again: the stages send theirs every few seconds)
        self._mark_sent = None
        self.engine = engine
        self.step = Step(engine, chunk_rows=DECIDE_CHUNK)
        days = [d if d is not None or wm is None else self.step.due(wm) - 1 for wm, d in marks]
        self.step.decided = min((d for d in days if d is not None), default=None)
        self._row_part = np.full(0, -1, dtype=np.int32)
        self._learn_partitions(engine.rows_of(restored), np.asarray(parts, dtype=np.int32))
        self._tp_watermark.clear()
        self._idle_at.clear()
        self._tp_next.clear()
        self._pending_next.clear()
        self._processed_next.clear()
        self._progress_at.clear()
        # known now, not learnt from the consumer's position at the first batch: that position is
        # past whatever a fetch under way or dropped has read (records then cut as seen before)
        self._tp_next.update(resume)
        self._processed_next.update(resume)
        self._resume_at = dict(resume)
        self._dirty, self._dirty_partitions, self._since_checkpoint = [], set(), 0
        self._unflushed, self._unflushed_partitions = [], set()  # rows of the old engine; the store recovered them
        self._paused = set()  # Faust resumes every partition after recovery
        self._held.clear()  # Faust seeks every partition to its committed offset: they come again
        self._held_ts.clear()
        self._generation += 1
        self._fenced = False
        self._recovered_once = True
        self._recovered_at = time.monotonic()
        self.metrics.restored.inc(n)
        self.metrics.subscribers.set(len(engine))
        logger.info(
            "recovered %d subscribers for partitions %s in %.2fs; decisions resume after day %s",
            n,
            sorted(actives),
            time.perf_counter() - t0,
            self.step.decided,
        )


def parse_watermark(payload: bytes) -> tuple[float | None, int | None]:
    """A watermark item's value (after its 2-byte partition): the decision time (None: no
    decision yet) and the last day decided in full (None: none yet, or not written, before 2026-12-07)."""
    (wm,) = _WM.unpack_from(payload)
    day = _DECIDED.unpack_from(payload, _WM.size)[0] if len(payload) >= _WM.size + _DECIDED.size else None
    return (None if math.isnan(wm) else wm), (None if day == NO_DECIDED else day)


def watermark_offsets(payload: bytes) -> dict[int, int] | None:
    """The input offsets a watermark item records (source index -> next offset), None for an item
    written before 2026-12-08 (none recorded)."""
    at = _WM.size + _DECIDED.size
    if len(payload) < at + _NOFF.size:
        return None
    (k,) = _NOFF.unpack_from(payload, at)
    at += _NOFF.size
    return dict(_OFF.unpack_from(payload, at + j * _OFF.size) for j in range(k))


def recovery_gaps(
    committed: dict[tuple[int, int], int | None], recorded: dict[int, dict[int, int] | None]
) -> list[tuple[int, int, int, int | None]]:
    """``(partition, source, committed offset, offset the table records)`` for every input
    partition whose committed offset the recovered state table does not cover. ``committed``:
    (partition, source index) -> the group's committed offset; ``recorded``: partition -> the
    offsets of its watermark item (:func:`watermark_offsets`; no key: the table holds no item for
    it). A checkpoint writes the item, with the offsets it commits, before it commits them, so a
    table that covers less (or holds no item where offsets were committed) missed part of the
    changelog; an item of an earlier release (None) cannot tell, and passes."""
    gaps = []
    for (p, si), c in sorted(committed.items()):
        if not c or c <= 0:
            continue
        if p not in recorded:
            gaps.append((p, si, c, None))
            continue
        offs = recorded[p]
        if offs is None:
            continue
        r = offs.get(si)
        if r is None or c > r:
            gaps.append((p, si, c, r))
    return gaps


def newest_items(sent: list[tuple[np.ndarray, list]]) -> list:
    """The newest of the items sent per engine row: ``sent`` holds (rows, items) pairs in the
    order they were sent, ``items[i]`` being row ``rows[i]``'s."""
    if len(sent) == 1:
        return sent[0][1]
    rows = np.concatenate([r for r, _ in sent]) if sent else np.empty(0, dtype=np.int64)
    every = [it for _, its in sent for it in its]
    if len(every) != len(rows):
        raise ValueError(f"{len(rows)} rows, {len(every)} items")
    _, first_from_end = np.unique(rows[::-1], return_index=True)
    return [every[i] for i in (len(rows) - 1 - first_from_end).tolist()]


def _credentials(s: Settings):
    from faust.auth import SASLCredentials, SSLCredentials

    ssl_context = None
    if "SSL" in s.security_protocol:
        from aiokafka.helpers import create_ssl_context

        ssl_context = create_ssl_context(cafile=s.ssl_cafile, certfile=s.ssl_certfile, keyfile=s.ssl_keyfile)
    if s.security_protocol.startswith("SASL"):
        return SASLCredentials(
            username=s.sasl_username, password=s.sasl_password, mechanism=s.sasl_mechanism, ssl_context=ssl_context
        )
    return SSLCredentials(ssl_context)


def build_service(settings: Settings | None = None, registry=None) -> ChurnService:
    """Settings from the environment (unless given), thresholds from CHURNWATCH_CONFIG."""
    settings = settings or Settings.from_env()
    config = EngineConfig.from_toml(settings.config_path) if settings.config_path else EngineConfig()
    return ChurnService(settings, config, registry=registry)
