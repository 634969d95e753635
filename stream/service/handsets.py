"""The handset (IMEI) dual-SIM stage: :class:`~stream.engine.handsets.HandsetIndex` keyed by IMEI,
as a Faust agent, so that two numbers sharing a handset meet whichever workers own them.

    churn-engine agent (keyed by subscriber)
        │ handset observations (StepResult.handset_ops) ──► <app>.handset.observations (routed by IMEI)
        ▼
    handset-index agent: HandsetIndex, table ``handset-index``; evidence ──► <app>.shadow.evidence
    churn-engine agent: Engine.apply_handset_evidence, then the subscriber's signals and alarms

Each worker's engine still indexes its own numbers and finds their evidence at once (the backtest's
single engine finds all of it that way). The stage adds the evidence between numbers that
different workers own, so alarms do not depend on the worker count. Evidence is idempotent and
commutative (a number keeps its latest evidence day and the one before it), so evidence found by
both the engine and the stage, or replayed after a crash, counts once.

Wire formats (internal, JSON envelopes, one per destination partition per batch):

* observations: ``{"o": [[kind, imei, msisdn, day, flags], ...]}`` (``stream.engine.handsets.Op``),
  to partition ``mix(imei) % partitions``, in the order the engine made them;
* evidence: ``{"h": [[msisdn, day], ...]}`` on the shadow evidence topic, to the partition of the
  msisdn (murmur2, as the inputs), so it reaches the worker that owns the subscriber.

The table value is the 2-byte partition + ``{"n": {msisdn: day}, "s": {msisdn: day}}`` as JSON; an
IMEI whose entries all expired (older than the ring: no decision reads them) gets a tombstone. As
in the second-SIM stages, a batch's table writes and evidence sends are acknowledged before its
offsets may be committed, and the engine agent's observation sends before its checkpoint commits.
"""

from __future__ import annotations

import asyncio
import logging
import math

import numpy as np
import orjson

from ..engine.handsets import DROP, UNSWITCH, USE, HandsetIndex
from .faust_adapter import mark_persisted, raw_table, raw_topic
from .shadow import number_partitions, partition_for

__all__ = [
    "HandsetStage",
    "op_messages",
    "handset_evidence_messages",
    "parse_evidence",
    "parse_ops",
    "parse_times",
    "TABLE",
]

logger = logging.getLogger(__name__)

TABLE = "handset-index"
# the stage's batch wait: short, since every worker's day decisions wait for its round trip
STAGE_WITHIN_S = 0.05
TIME_KEY = b"\x00time:"  # + partition: the stage partition's heartbeats (msisdn keys are digits)
KINDS = (USE, DROP, UNSWITCH)


def op_messages(ops: list, partitions: int) -> list[tuple[int, bytes]]:
    """The engine's handset observations, routed by IMEI: one envelope per partition, each
    partition's observations in the order they were made."""
    if not ops:
        return []
    part = number_partitions(np.fromiter((o[1] for o in ops), dtype=np.uint64, count=len(ops)), partitions).tolist()
    by: dict[int, list] = {}
    for p, o in zip(part, ops, strict=True):
        by.setdefault(p, []).append(list(o))
    return [(p, orjson.dumps({"o": o})) for p, o in sorted(by.items())]


def handset_evidence_messages(evidence: list[tuple[str, int]], partitions: int) -> list[tuple[int, bytes]]:
    """The stage's evidence, routed by subscriber (murmur2 of the msisdn, as the inputs): one
    envelope per partition, each (msisdn, day) once."""
    by: dict[int, set] = {}
    for m, d in evidence:
        by.setdefault(partition_for(m.encode(), partitions), set()).add((m, d))
    return [(p, orjson.dumps({"h": sorted(e)})) for p, e in sorted(by.items())]


def parse_evidence(entries) -> list[tuple[str, int]]:
    """An evidence envelope's ``"h"`` list, validated; raises ValueError on a malformed entry."""
    if not isinstance(entries, list):
        raise ValueError("handset evidence is not a list")
    out = []
    for e in entries:
        m, d = e
        if not isinstance(m, str) or not isinstance(d, int):
            raise ValueError(f"bad handset evidence {e!r}")
        out.append((m, d))
    return out


def parse_ops(rec) -> list[tuple[int, int, str, int, int]]:
    """An observation envelope's ``"o"`` list, validated; raises ValueError (or TypeError,
    KeyError) if malformed."""
    ops = []
    for kind, h, m, d, flags in rec["o"]:
        if kind not in KINDS or not isinstance(m, str) or not 0 < int(h) < 2**64:
            raise ValueError("bad handset observation")
        ops.append((int(kind), int(h), m, int(d), int(flags)))
    return ops


def parse_times(entries, partitions: int) -> list[tuple[int, float]]:
    """A ``"w"`` list (heartbeats and the stage's replies): [[partition, event time], ...],
    validated; raises ValueError (or TypeError) if malformed."""
    out = []
    for p, t in entries:
        if not (isinstance(p, int) and 0 <= p < partitions and isinstance(t, int | float) and math.isfinite(t)):
            raise ValueError(f"bad stage time {[p, t]!r}")
        out.append((p, float(t)))
    return out


class HandsetStage:
    """The IMEI-keyed stage for one worker: topic, table, agent and recovery."""

    def __init__(self, service) -> None:
        self.service = service
        s = service.settings
        cfg = service.engine_config
        self.keep_days = max(cfg.ring_days, cfg.dual_sim_days) + 1
        self.index = HandsetIndex(cfg.dual_sim_days)
        self._part: dict[int, int] = {}
        self._today: int | None = None
        # per stage partition: each input partition's event time, as its worker last reported it
        self._times: dict[int, dict[int, float]] = {}
        self.topic = raw_topic(service.app, s.topic_handsets, partitions=s.partitions)
        self.table = raw_table(
            service.app, TABLE, s.partitions, self._recover, "handset dual-SIM stage: numbers and switches per IMEI"
        )
        service.app.agent(self.topic, name="handset-index")(
            service.shadow.agent_body("handset-index", self.process, within=STAGE_WITHIN_S)
        )

    async def route_from_engine(self, ops: list) -> list:
        """The engine agent's handset observations to the stage. Returns the send futures."""
        s = self.service.settings
        return await self.service.shadow.send_routed(s.topic_handsets, op_messages(ops, s.partitions), "handsets")

    async def heartbeat(self, partitions: list[int], t: float) -> list:
        """The engine agent's progress: its input ``partitions`` are complete up to event time
        ``t`` and every handset observation of their events before it was sent. To every stage
        partition (after the observations, in each partition's order). Returns the send futures."""
        s = self.service.settings
        env = orjson.dumps({"w": [[p, t] for p in partitions]})
        return await self.service.shadow.send_routed(
            s.topic_handsets, [(q, env) for q in range(s.partitions)], "heartbeats"
        )

    def time_of(self, q: int) -> float | None:
        """Stage partition ``q``'s time: every input partition's observations up to it are in
        (the minimum over every input partition's heartbeat; None while one is missing)."""
        times = self._times.get(q, {})
        if len(times) < self.service.settings.partitions:
            return None
        return min(times.values())

    async def process(self, msgs) -> None:
        if not msgs:
            return
        m_ = self.service.metrics
        s = self.service.settings
        evidence: list[tuple[str, int]] = []
        touched: set[int] = set()
        heard: dict[int, bool] = {}  # stage partitions with heartbeats: whether their times moved
        today = self._today
        for m in msgs:
            try:
                rec = orjson.loads(m.value)
                ops = parse_ops(rec) if "o" in rec else []
                beats = parse_times(rec["w"], s.partitions) if "w" in rec else []
                if not ops and not beats and "o" not in rec:
                    raise ValueError("empty envelope")
            except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, OverflowError):
                m_.shadow_bad.labels(topic=m.topic).inc()
                continue
            if beats:
                times = self._times.setdefault(m.partition, {})
                moved = heard.get(m.partition, False)
                for p, t in beats:
                    if t > times.get(p, -math.inf):
                        times[p] = t
                        moved = True
                heard[m.partition] = moved
            for op in ops:
                self._part[op[1]] = m.partition
                touched.add(op[1])
                if op[0] == USE:
                    today = op[3] if today is None else max(today, op[3])
            evidence.extend(self.index.apply(ops))
        if today is not None and (self._today is None or today > self._today):
            self._today = today
            touched.update(self.index.expire(today - self.keep_days))
        items: dict[bytes, tuple[int, bytes | None]] = {}
        for h in touched:
            p = self._part.get(h)
            if p is None:
                continue
            entry = self.index.entry(h)
            items[str(h).encode()] = (p, None if entry is None else orjson.dumps(entry))
            if entry is None:
                self._part.pop(h, None)
        for q, moved in heard.items():
            if moved:
                items[TIME_KEY + str(q).encode()] = (q, orjson.dumps({str(p): t for p, t in self._times[q].items()}))
        shadow = self.service.shadow
        sends = await shadow.write_table(self.table, items)
        n_changelog = len(sends)
        sends += await shadow.send_routed(
            s.topic_shadow_evidence, handset_evidence_messages(evidence, s.partitions), "handset-evidence"
        )
        # ... then, behind that evidence in every evidence partition, the stage partitions' times
        # (to each heartbeat, moved or not: a restarted worker learns them)
        times = [[q, t] for q in sorted(heard) if (t := self.time_of(q)) is not None]
        if times:
            env = orjson.dumps({"w": times})
            sends += await shadow.send_routed(
                s.topic_shadow_evidence, [(p, env) for p in range(s.partitions)], "handset-time"
            )
        if sends:
            results = await asyncio.gather(*sends)
            mark_persisted(self.table, results[:n_changelog])
        m_.handset_imeis.set(len(self.index))

    async def _recover(self) -> None:
        index = HandsetIndex(self.service.engine_config.dual_sim_days)

        times: dict[int, dict[int, float]] = {}

        def restore(key: bytes, payload: bytes) -> tuple[int | bytes, list[int]]:
            if key.startswith(TIME_KEY):
                times[int(key[len(TIME_KEY) :])] = {int(p): float(t) for p, t in orjson.loads(payload).items()}
                return key, []
            h = int(key)
            entry = orjson.loads(payload)
            index.load(h, entry)
            return h, [*entry.get("n", {}).values(), *entry.get("s", {}).values()]

        shadow = self.service.shadow
        part, today = shadow.recover_table(self.table, self.service.settings.topic_handsets, index, restore, "handsets")
        self.index, self._today = index, today
        self._part = {h: p for h, p in part.items() if isinstance(h, int)}
        self._times.update(times)  # (times only move forward: the partitions kept keep theirs)
        self.service.metrics.handset_imeis.set(len(index))
