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

import numpy as np
import orjson

from ..engine.handsets import DROP, UNSWITCH, USE, HandsetIndex
from .faust_adapter import mark_persisted, raw_table, raw_topic
from .shadow import number_partitions, partition_for

__all__ = ["HandsetStage", "op_messages", "handset_evidence_messages", "parse_evidence", "TABLE"]

logger = logging.getLogger(__name__)

TABLE = "handset-index"
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
    """An observation envelope, validated; raises ValueError (or TypeError/KeyError) if malformed."""
    ops = []
    for kind, h, m, d, flags in rec["o"]:
        if kind not in KINDS or not isinstance(m, str) or not 0 < int(h) < 2**64:
            raise ValueError("bad handset observation")
        ops.append((int(kind), int(h), m, int(d), int(flags)))
    return ops


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
        self.topic = raw_topic(service.app, s.topic_handsets, partitions=s.partitions)
        self.table = raw_table(
            service.app, TABLE, s.partitions, self._recover, "handset dual-SIM stage: numbers and switches per IMEI"
        )
        service.app.agent(self.topic, name="handset-index")(service.shadow.agent_body("handset-index", self.process))

    async def route_from_engine(self, ops: list) -> list:
        """The engine agent's handset observations to the stage. Returns the send futures."""
        s = self.service.settings
        return await self.service.shadow.send_routed(s.topic_handsets, op_messages(ops, s.partitions), "handsets")

    async def process(self, msgs) -> None:
        if not msgs:
            return
        m_ = self.service.metrics
        evidence: list[tuple[str, int]] = []
        touched: set[int] = set()
        today = self._today
        for m in msgs:
            try:
                ops = parse_ops(orjson.loads(m.value))
            except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, OverflowError):
                m_.shadow_bad.labels(topic=m.topic).inc()
                continue
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
        shadow = self.service.shadow
        sends = await shadow.write_table(self.table, items)
        n_changelog = len(sends)
        s = self.service.settings
        sends += await shadow.send_routed(
            s.topic_shadow_evidence, handset_evidence_messages(evidence, s.partitions), "handset-evidence"
        )
        if sends:
            results = await asyncio.gather(*sends)
            mark_persisted(self.table, results[:n_changelog])
        m_.handset_imeis.set(len(self.index))

    async def _recover(self) -> None:
        index = HandsetIndex(self.service.engine_config.dual_sim_days)

        def restore(key: bytes, payload: bytes) -> tuple[int, list[int]]:
            h = int(key)
            entry = orjson.loads(payload)
            index.load(h, entry)
            return h, [*entry.get("n", {}).values(), *entry.get("s", {}).values()]

        shadow = self.service.shadow
        part, today = shadow.recover_table(self.table, self.service.settings.topic_handsets, index, restore, "handsets")
        self.index, self._part, self._today = index, part, today
        self.service.metrics.handset_imeis.set(len(index))
