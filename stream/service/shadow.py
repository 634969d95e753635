"""The second-SIM join over Kafka: stages 1 and 2 of ``stream/engine/shadow.py`` as Faust agents.

    churn-engine agent (keyed by subscriber S; inputs + evidence)
        │ contacts with competitor numbers ──► <app>.shadow.contacts   (routed by competitor number X)
        │ S's circle band keys ─────────────► <app>.shadow.bands      (routed by band hash)
        ▼
    shadow-peers agent: PeerSketches, table ``shadow-peers``; X's bands ──► <app>.shadow.bands
    shadow-bands agent: BandIndex, table ``shadow-bands``; candidates ──► <app>.shadow.evidence (routed by S)
    churn-engine agent: Engine.apply_shadow (confirmation), then S's signals and alarms

Every stage is keyed: each record goes to the partition of its key (X: a fixed hash of the number;
a band key: its own hash; S: murmur2 of the msisdn, exactly like the inputs, so the evidence is
co-partitioned with them), so the worker owning that partition holds the key's state, and more
workers share the join like they share the subscribers. Records bound for one partition travel
in one envelope per batch (a message per record would cost more than the join itself: the
simulated operator has ~190 distinct competitor contacts per 1,000 events). Every stage is idempotent (MinHash
minima, first/last days, band entries keyed by id, the best evidence kept), so the at-least-once
replay after a crash adds nothing twice; each batch's table writes and sends are acknowledged
before its offsets may be committed, as in the main agent.

Table values: 2-byte partition + payload (PeerSketches snapshot; BandIndex snapshot as JSON).
Expired keys get a tombstone (value None) in the changelog.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import orjson
from aiokafka.partitioner import murmur2
from faust.types import TP

from ..engine.shadow import BandIndex, PeerSketches, band_keys_many, mix
from ..settings import BANDS_TABLE, PEERS_TABLE
from .faust_adapter import PART, mark_persisted, owned_items, put_many, raw_table, raw_topic

__all__ = ["ShadowStages", "partition_for", "contact_messages", "band_messages", "evidence_messages"]

logger = logging.getLogger(__name__)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client and aiokafka) gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def number_partitions(x: np.ndarray, partitions: int) -> np.ndarray:
    """Stage 1's routing: the partition of each competitor number (a fixed hash of the number)."""
    return (mix(np.asarray(x, dtype=np.uint64)) % np.uint64(partitions)).astype(np.int64)


def band_partition(key: str, partitions: int) -> int:
    """Stage 2's routing: a band key is a hash already (16 hex digits)."""
    return int(key, 16) % partitions


def contact_messages(contacts: tuple[np.ndarray, np.ndarray, np.ndarray], partitions: int) -> list[tuple[int, bytes]]:
    """Stage 1's input, routed by competitor number: one envelope per partition holding the
    (number, member, day) rows of the numbers that route there."""
    x, member, day = contacts
    if not len(x):
        return []
    part = number_partitions(x, partitions)
    out = []
    for p in np.unique(part).tolist():
        sel = part == p
        out.append((p, orjson.dumps({"x": x[sel].tolist(), "m": member[sel].tolist(), "d": day[sel].tolist()})))
    return out


def band_messages(x_publications: list[dict], s_publications: list[dict], partitions: int) -> list[tuple[int, bytes]]:
    """Stage 2's input, routed by band key: every X publication under each of its signature's
    band keys, every subscriber publication under its circle's band keys; one envelope per
    partition, ``{"e": [[band key, record], ...]}``."""
    by: dict[int, list] = {}
    if x_publications:
        keys = band_keys_many(np.array([rec["sig"] for rec in x_publications], dtype=np.uint32))
        for rec, ks in zip(x_publications, keys, strict=True):
            for key in ks:
                by.setdefault(band_partition(key, partitions), []).append([key, rec])
    for rec in s_publications:
        entry = {"s": rec["s"], "day": rec["day"]}
        for key in rec["bands"]:
            by.setdefault(band_partition(key, partitions), []).append([key, entry])
    return [(p, orjson.dumps({"e": e})) for p, e in sorted(by.items())]


def evidence_messages(evidence: list[dict], partitions: int) -> list[tuple[int, bytes]]:
    """Stage 3's input, routed by subscriber exactly as the inputs are (murmur2 of the msisdn), so
    it reaches the worker that owns the subscriber: one envelope per partition."""
    by: dict[int, list] = {}
    for ev in evidence:
        by.setdefault(partition_for(ev["s"].encode(), partitions), []).append(ev)
    return [(p, orjson.dumps({"e": e})) for p, e in sorted(by.items())]


class ShadowStages:
    """Stages 1 and 2 for one worker: topics, tables, agents and their recovery."""

    def __init__(self, service) -> None:
        self.service = service
        s = service.settings
        app = service.app
        cfg = service.engine_config
        self.contacts_topic = raw_topic(app, s.topic_shadow_contacts, partitions=s.partitions)
        self.bands_topic = raw_topic(app, s.topic_shadow_bands, partitions=s.partitions)
        self.peers = PeerSketches(cfg)
        self.bands = BandIndex(cfg)
        self._peer_part: dict[int, int] = {}
        self._band_part: dict[str, int] = {}
        self._peers_today: int | None = None
        self._bands_today: int | None = None
        self.peers_table = raw_table(
            app,
            PEERS_TABLE,
            s.partitions,
            self._recover_peers,
            "second SIM, stage 1: MinHash sketch per competitor number",
        )
        self.bands_table = raw_table(
            app, BANDS_TABLE, s.partitions, self._recover_bands, "second SIM, stage 2: LSH band entries"
        )
        app.agent(self.contacts_topic, name="shadow-peers")(self._agent("shadow-peers", self.process_contacts))
        app.agent(self.bands_topic, name="shadow-bands")(self._agent("shadow-bands", self.process_bands))

    # ------------------------------------------------------------- sends
    async def send_routed(self, topic: str, envelopes: list[tuple[int, bytes]], stage: str) -> list:
        """Send envelopes, each to its partition; returns futures resolved on the broker's ack."""
        if not envelopes:
            return []
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for p, value in envelopes:
            by_partition.setdefault(p, []).append((None, value))
        self.service.metrics.shadow_messages.labels(stage=stage).inc(len(envelopes))
        return await self.service.producer.send_batches(topic, by_partition)

    async def route_from_engine(self, contacts, s_publications: list[dict]) -> list:
        """The engine agent's part of the join: its batch's contacts to stage 1, its subscribers'
        circle publications to stage 2. Returns the send futures."""
        s = self.service.settings
        return await self.send_routed(
            s.topic_shadow_contacts, contact_messages(contacts, s.partitions), "contacts"
        ) + await self.send_routed(s.topic_shadow_bands, band_messages([], s_publications, s.partitions), "bands")

    async def _write(self, table, items: dict[bytes, tuple[int, bytes | None]]) -> list:
        """Write ``key -> (partition, payload or None = delete)`` to the table's store and changelog."""
        if not items:
            return []
        rows = [(key, p, None if payload is None else PART.pack(p) + payload) for key, (p, payload) in items.items()]
        by_partition = put_many(table, rows, self.service.settings.topic_calls)
        return await self.service.producer.send_batches(table.changelog_topic.get_topic_name(), by_partition)

    def _agent(self, name: str, process):
        """The agent body of a stage: ``process`` each batch of messages; on a bug, exit without
        acking (the replay is idempotent)."""

        async def agent(stream) -> None:
            s = self.service.settings
            async for events in stream.take_events(s.batch_size, within=s.batch_timeout_s):
                try:
                    await process(self._messages(events))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.service.fatal(name)

        return agent

    def _messages(self, events) -> list:
        assigned = self.service.app.consumer.assignment()
        return [e.message for e in events if TP(e.message.topic, e.message.partition) in assigned]

    def _loads(self, m) -> dict | None:
        try:
            rec = orjson.loads(m.value)
            return rec if isinstance(rec, dict) else None
        except (orjson.JSONDecodeError, TypeError):
            return None

    # ------------------------------------------------------------- stage 1
    async def process_contacts(self, msgs) -> None:
        if not msgs:
            return
        m_ = self.service.metrics
        xs: list[int] = []
        members: list[int] = []
        days: list[int] = []
        for m in msgs:
            rec = self._loads(m)
            try:
                xx, mm, dd = [int(v) for v in rec["x"]], [int(v) for v in rec["m"]], [int(v) for v in rec["d"]]
                if not (len(xx) == len(mm) == len(dd)) or min(xx + mm, default=0) < 0:
                    raise ValueError
            except (TypeError, KeyError, ValueError, OverflowError):
                m_.shadow_bad.labels(topic=m.topic).inc()
                continue
            for x in xx:
                self._peer_part[x] = m.partition
            xs.extend(xx)
            members.extend(mm)
            days.extend(dd)
        if not xs:
            return
        self.peers.observe(
            np.array(xs, dtype=np.uint64), np.array(members, dtype=np.uint64), np.array(days, dtype=np.int64)
        )
        today = max(days)
        items: dict[bytes, tuple[int, bytes | None]] = {}
        if self._peers_today is None or today > self._peers_today:
            if self._peers_today is not None:
                for x in self.peers.expire(today):
                    p = self._peer_part.pop(x, None)
                    if p is not None:
                        items[str(x).encode()] = (p, None)
            self._peers_today = today
        today = self._peers_today
        pubs = self.peers.publications(today)
        for x in set(xs) | {p["x"] for p in pubs}:
            snap = self.peers.snapshot(x)
            if snap is not None:
                items[str(x).encode()] = (self._peer_part[x], snap)
        sends = await self._write(self.peers_table, items)
        n_changelog = len(sends)
        sends += await self.send_routed(
            self.service.settings.topic_shadow_bands, band_messages(pubs, [], self.service.settings.partitions), "bands"
        )
        if sends:
            results = await asyncio.gather(*sends)
            mark_persisted(self.peers_table, results[:n_changelog])
        m_.shadow_numbers.set(len(self.peers))

    # ------------------------------------------------------------- stage 2
    async def process_bands(self, msgs) -> None:
        if not msgs:
            return
        m_ = self.service.metrics
        evidence: list[dict] = []
        touched: set[str] = set()
        today = self._bands_today
        for m in msgs:
            env = self._loads(m)
            entries = env.get("e") if env else None
            if not isinstance(entries, list):
                m_.shadow_bad.labels(topic=m.topic).inc()
                continue
            for entry in entries:
                try:
                    key, rec = entry
                    int(key, 16)
                    day = int(rec["day"])
                    if "x" in rec:
                        rec = {
                            "x": int(rec["x"]),
                            "sig": [int(v) for v in rec["sig"]],
                            "first": int(rec["first"]),
                            "last": int(rec["last"]),
                            "day": day,
                        }
                    else:
                        rec = {"s": str(rec["s"]), "day": day}
                except (TypeError, KeyError, ValueError, AttributeError):
                    m_.shadow_bad.labels(topic=m.topic).inc()
                    continue
                self._band_part[key] = m.partition
                evidence.extend(self.bands.add(key, rec))
                touched.add(key)
                today = day if today is None else max(today, day)
        items: dict[bytes, tuple[int, bytes | None]] = {}
        if today is not None and (self._bands_today is None or today > self._bands_today):
            if self._bands_today is not None:
                for key in self.bands.expire(today):
                    touched.add(key)
            self._bands_today = today
        for key in touched:
            p = self._band_part.get(key)
            if p is None:
                continue
            snap = self.bands.snapshot(key)
            items[key.encode()] = (p, None if snap is None else orjson.dumps(snap))
            if snap is None:
                self._band_part.pop(key, None)
        sends = await self._write(self.bands_table, items)
        n_changelog = len(sends)
        sends += await self.send_routed(
            self.service.settings.topic_shadow_evidence,
            evidence_messages(evidence, self.service.settings.partitions),
            "evidence",
        )
        if sends:
            results = await asyncio.gather(*sends)
            mark_persisted(self.bands_table, results[:n_changelog])
        m_.shadow_band_keys.set(len(self.bands))

    # ------------------------------------------------------------- recovery
    def _actives(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.service.app.assignor.assigned_actives() if tp.topic == topic}

    def _recover(self, table, topic: str, index, restore, what: str) -> tuple[dict, int | None]:
        """Rebuilds ``index`` from ``table``'s entries in this worker's active partitions of ``topic``:
        ``restore(key, payload)`` puts one entry into it and returns its index key and the days it
        holds. Returns each index key's partition and the latest day seen (None if none)."""
        t0 = time.perf_counter()
        actives = self._actives(topic)
        part: dict = {}
        today = None
        for key, p, payload in owned_items(table, actives):
            k, days = restore(key, payload)
            part[k] = p
            if days:
                today = max(days) if today is None else max(today, max(days))
        logger.info(
            "recovered %d %s for partitions %s in %.2fs", len(index), what, sorted(actives), time.perf_counter() - t0
        )
        return part, today

    async def _recover_peers(self) -> None:
        peers = PeerSketches(self.service.engine_config)

        def restore(key: bytes, payload: bytes) -> tuple[int, list[int]]:
            x = int(key)
            peers.restore(x, payload)
            return x, [peers.get(x)["last"]]

        topic = self.service.settings.topic_shadow_contacts
        part, today = self._recover(self.peers_table, topic, peers, restore, "competitor-number sketches")
        self.peers, self._peer_part, self._peers_today = peers, part, today
        self.service.metrics.shadow_numbers.set(len(peers))

    async def _recover_bands(self) -> None:
        bands = BandIndex(self.service.engine_config)

        def restore(key: bytes, payload: bytes) -> tuple[str, list[int]]:
            k = key.decode("ascii")
            snap = orjson.loads(payload)
            bands.restore(k, snap)
            return k, list(snap["s"].values()) + [v[0] for v in snap["x"].values()]

        topic = self.service.settings.topic_shadow_bands
        part, today = self._recover(self.bands_table, topic, bands, restore, "band keys")
        self.bands, self._band_part, self._bands_today = bands, part, today
        self.service.metrics.shadow_band_keys.set(len(bands))
