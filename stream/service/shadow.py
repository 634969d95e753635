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

**The barrier: a day is decided once the join has answered the day before** (the backtest
confirms the evidence of day D's publications before it decides D + 1; README "When alarms are
decided"). Markers travel behind the records, Flink-style, one hop at a time:

1. every worker, after its step decided day D (its contacts and circle publications sent),
   sends ``{"mark": 0, "at": [[input partition, D], ...]}`` for the input partitions it owns to
   every contacts and every bands partition (and again every ``HEARTBEAT_S``; a worker with no
   events and nothing behind reports ``IDLE_DAY``);
2. stage 1 publishes its competitor numbers as of day G, the least day every input partition
   reported to each contacts partition it owns, when G moves on (not by the newest contact day),
   then sends ``{"mark": 1, "at": [[contacts partition, G], ...]}`` to every bands partition;
3. stage 2 sends, behind the evidence, ``{"mark": 2, "at": [[bands partition, G'], ...]}`` to
   every evidence partition, G' the least of every input partition's and every contacts
   partition's marks it read;
4. a worker decides day D + 1 only when every bands partition's mark on each of its evidence
   partitions is at least D (``ChurnService._shadow_cap``).

The publications as of day D hold the contacts of the days before D, all of them and no others
(``ShadowJoin.step``, the backtest's): a day's contacts wait for the next day's decision, at the
decision grace into it, as decisions wait for their days' events. A worker applies events up to a
window ahead of its decisions, so stage 1 holds a contact of a day not published yet until that
day's publication is made, in its table (``HOLD_PREFIX`` keys by the contact's day, deleted once
observed: nothing held is lost on a crash).
Marks are the latest read (a restarted worker's lower day holds the join back again); in memory
only, and refreshed every few seconds, so a new owner of a partition learns them.
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

__all__ = [
    "ShadowStages",
    "partition_for",
    "contact_messages",
    "band_messages",
    "evidence_messages",
    "mark_messages",
    "parse_mark",
    "Marks",
    "IDLE_DAY",
]

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


IDLE_DAY = 2**31 - 1  # the mark of a source with nothing to send: it holds no stage back
HOLD_PREFIX = b"\x01h:"  # stage 1's table keys of held contacts: HOLD_PREFIX + b"<day>:<partition>:<offset>"
MARK_RESEND_S = 1.0  # a stage sends its mark again at least this often while marks reach it


def mark_messages(stage: int, at: dict[int, int], partitions: int) -> list[tuple[int, bytes]]:
    """A barrier mark (above): ``at`` maps each partition the sender speaks for to its day; to
    every partition of the next stage's topic."""
    value = orjson.dumps({"mark": stage, "at": [[p, int(d)] for p, d in sorted(at.items())]})
    return [(p, value) for p in range(partitions)]


def parse_mark(env: dict, partitions: int) -> tuple[int, list[tuple[int, int]]]:
    """A mark envelope's stage and ``[(partition, day)]``; raises ValueError if malformed."""
    stage, at = env["mark"], env.get("at")
    if stage not in (0, 1, 2) or isinstance(stage, bool) or not isinstance(at, list):
        raise ValueError(f"bad mark {env!r}")
    out = []
    for p, d in at:
        if not (type(p) is int and 0 <= p < partitions and type(d) is int and -(2**31) <= d <= IDLE_DAY):
            raise ValueError(f"bad mark entry {[p, d]!r}")
        out.append((p, d))
    return stage, out


class Marks:
    """The latest mark each source reported on each partition read; the gate over some of
    those partitions: the least mark, once every one of ``sources`` has reported on each."""

    def __init__(self, sources: int) -> None:
        self.sources = sources
        self._m: dict[int, dict[int, int]] = {}

    def note(self, read: int, at: list[tuple[int, int]]) -> None:
        d = self._m.setdefault(read, {})
        for p, day in at:
            d[p] = day

    def gate(self, reads) -> int | None:
        out = None
        for r in reads:
            d = self._m.get(r)
            if d is None or len(d) < self.sources:
                return None
            v = min(d.values())
            out = v if out is None else min(out, v)
        return out

    def clear(self) -> None:
        self._m.clear()


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
        self._peers_today: int | None = None  # stage 1: the day expired to
        self._published: int | None = None  # ... and the day its numbers were last published as of
        self._bands_today: int | None = None
        n = s.partitions
        self.marks_1 = Marks(n)  # stage 1: the input partitions' marks, per contacts partition
        self.marks_2 = Marks(n)  # stage 2: the input partitions' marks, per bands partition
        self.marks_2_peers = Marks(n)  # ... and the contacts partitions' (stage 1's)
        self._mark_sent: dict[int, tuple[int, float]] = {}  # stage -> (day, monotonic time) last sent
        # stage 1's held contacts: table key -> (day, partition, numbers, members)
        self._held: dict[bytes, tuple[int, int, list, list]] = {}
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

    async def send_source_mark(self, at: dict[int, int]) -> list:
        """The engine agent's mark (stage 0): its input partitions' decided day, behind their
        contacts and publications, to every contacts and every bands partition."""
        s = self.service.settings
        return await self.send_routed(
            s.topic_shadow_contacts, mark_messages(0, at, s.partitions), "marks"
        ) + await self.send_routed(s.topic_shadow_bands, mark_messages(0, at, s.partitions), "marks")

    async def _forward_mark(self, stage: int, topic: str, own: str, gate: int | None) -> list:
        """Stage ``stage``'s mark for its own partitions of ``own`` to every partition of ``topic``,
        when its gate moved or ``MARK_RESEND_S`` passed."""
        if gate is None:
            return []
        now = time.monotonic()
        last = self._mark_sent.get(stage)
        if last is not None and last[0] == gate and now - last[1] < MARK_RESEND_S:
            return []
        self._mark_sent[stage] = (gate, now)
        at = {p: gate for p in self._owned(own)}
        return await self.send_routed(topic, mark_messages(stage, at, self.service.settings.partitions), "marks")

    def _owned(self, topic: str) -> list[int]:
        return sorted(tp.partition for tp in self.service.app.consumer.assignment() if tp.topic == topic)

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
    def _parse_contacts(self, msgs) -> list[tuple[int, int, list | tuple]]:
        """A batch of stage 1's messages, parsed: ``(partition, offset, marks)`` for a source's
        mark, ``(partition, offset, (numbers, members, days))`` for contacts;
        unreadable ones counted and skipped."""
        n = self.service.settings.partitions
        out: list[tuple[int, int, list | tuple]] = []
        for m in msgs:
            rec = self._loads(m)
            try:
                if rec is None:
                    raise ValueError
                if "mark" in rec:
                    stage, at = parse_mark(rec, n)
                    if stage != 0:
                        raise ValueError
                    out.append((m.partition, m.offset, at))
                    continue
                xx, mm, dd = [int(v) for v in rec["x"]], [int(v) for v in rec["m"]], [int(v) for v in rec["d"]]
                if not (len(xx) == len(mm) == len(dd)) or min(xx + mm, default=0) < 0:
                    raise ValueError
            except (TypeError, KeyError, ValueError, OverflowError):
                self.service.metrics.shadow_bad.labels(topic=m.topic).inc()
                continue
            out.append((m.partition, m.offset, (xx, mm, dd)))
        return out

    def _hold(self, q: int, offset: int, rows: list[tuple[int, int, int]], items: dict) -> None:
        """Keep contact rows ``(number, member, day)`` until their day is published: in memory and
        in the table (a key per day, partition and the envelope's offset)."""
        by: dict[int, tuple[list, list]] = {}
        for x, m, d in rows:
            xs, ms = by.setdefault(d, ([], []))
            xs.append(x)
            ms.append(m)
        for d, (xs, ms) in by.items():
            key = HOLD_PREFIX + b"%d:%d:%d" % (d, q, offset)
            self._held[key] = (d, q, xs, ms)
            items[key] = (q, orjson.dumps({"x": xs, "m": ms}))

    def _release(self, before: int, buf: tuple[list, list, list], items: dict) -> None:
        """Held contacts of the days before ``before``, into ``buf`` (to observe), and out of the table."""
        for key in [k for k, v in self._held.items() if v[0] < before]:
            d, q, xs, ms = self._held.pop(key)
            for x in xs:
                self._peer_part[x] = q  # (again, if it expired meanwhile)
            buf[0].extend(xs)
            buf[1].extend(ms)
            buf[2].extend([d] * len(xs))
            items[key] = (q, None)

    def _count_held(self) -> None:
        self.service.metrics.shadow_held.set(sum(len(v[2]) for v in self._held.values()))

    def _observe(self, buf: tuple[list, list, list], touched: set[int]) -> None:
        if buf[0]:
            x, member, day = buf
            self.peers.observe(
                np.array(x, dtype=np.uint64), np.array(member, dtype=np.uint64), np.array(day, dtype=np.int64)
            )
            touched.update(x)
            for v in buf:
                v.clear()

    def _publish(self, today: int, items: dict, touched: set[int]) -> list[dict]:
        """Stage 1 as of ``today`` (its gate): the held contacts of the days before it observed,
        the numbers unseen too long expired, the ones that qualify published (the backtest's
        ``ShadowJoin.step`` at a decided day), then the held contacts of ``today`` observed (they
        go into the next publication)."""
        buf: tuple[list, list, list] = ([], [], [])
        self._release(today, buf, items)
        self._observe(buf, touched)
        if self._peers_today is None or today > self._peers_today:
            if self._peers_today is not None:
                for x in self.peers.expire(today):
                    p = self._peer_part.pop(x, None)
                    if p is not None:
                        items[str(x).encode()] = (p, None)
            self._peers_today = today
        self._published = today
        pubs = self.peers.publications(today)
        self._release(today + 1, buf, items)
        self._observe(buf, touched)
        return pubs

    async def process_contacts(self, msgs) -> None:
        if not msgs:
            return
        s = self.service.settings
        own = self._owned(s.topic_shadow_contacts)
        touched: set[int] = set()
        pubs: list[dict] = []
        items: dict[bytes, tuple[int, bytes | None]] = {}
        buf: tuple[list, list, list] = ([], [], [])
        for q, offset, payload in self._parse_contacts(msgs):
            if isinstance(payload, list):  # a source's mark: publish once every source passed a day
                self._observe(buf, touched)
                self.marks_1.note(q, payload)
                gate = self.marks_1.gate(own)
                if gate is not None and gate < IDLE_DAY and (self._published is None or gate > self._published):
                    pubs.extend(self._publish(gate, items, touched))
                continue
            xx, mm, dd = payload
            for x in xx:
                self._peer_part[x] = q
            ahead = []
            for x, m, d in zip(xx, mm, dd, strict=True):
                if self._published is not None and d <= self._published:
                    buf[0].append(x)  # (in the publications as of the days after its own)
                    buf[1].append(m)
                    buf[2].append(d)
                else:  # its day is not published yet: it waits for that publication
                    ahead.append((x, m, d))
            if ahead:
                self._hold(q, offset, ahead, items)
        self._observe(buf, touched)
        for x in touched | {p["x"] for p in pubs}:
            snap = self.peers.snapshot(x)
            if snap is not None:
                items[str(x).encode()] = (self._peer_part[x], snap)
        sends = await self._write(self.peers_table, items)
        n_changelog = len(sends)
        sends += await self.send_routed(s.topic_shadow_bands, band_messages(pubs, [], s.partitions), "bands")
        # behind its publications: the day stage 1 has published as of, to every bands partition
        sends += await self._forward_mark(1, s.topic_shadow_bands, s.topic_shadow_contacts, self.marks_1.gate(own))
        if sends:
            results = await asyncio.gather(*sends)
            mark_persisted(self.peers_table, results[:n_changelog])
        self.service.metrics.shadow_numbers.set(len(self.peers))
        self._count_held()

    # ------------------------------------------------------------- stage 2
    def _band_entry(self, entry) -> tuple[str, dict]:
        """One ``[band key, record]`` of a bands envelope, validated (raises on a bad one)."""
        key, rec = entry
        int(key, 16)
        day = int(rec["day"])
        if "x" in rec:
            return key, {
                "x": int(rec["x"]),
                "sig": [int(v) for v in rec["sig"]],
                "first": int(rec["first"]),
                "last": int(rec["last"]),
                "day": day,
            }
        return key, {"s": str(rec["s"]), "day": day}

    async def process_bands(self, msgs) -> None:
        if not msgs:
            return
        m_ = self.service.metrics
        s = self.service.settings
        own = self._owned(s.topic_shadow_bands)
        evidence: list[dict] = []
        touched: set[str] = set()
        for m in msgs:
            env = self._loads(m)
            if env is not None and "mark" in env:
                try:
                    stage, at = parse_mark(env, s.partitions)
                    if stage == 2:
                        raise ValueError("a stage 2 mark on the bands topic")
                except (TypeError, KeyError, ValueError):
                    m_.shadow_bad.labels(topic=m.topic).inc()
                    continue
                (self.marks_2 if stage == 0 else self.marks_2_peers).note(m.partition, at)
                continue
            entries = env.get("e") if env else None
            if not isinstance(entries, list):
                m_.shadow_bad.labels(topic=m.topic).inc()
                continue
            for entry in entries:
                try:
                    key, rec = self._band_entry(entry)
                except (TypeError, KeyError, ValueError, AttributeError):
                    m_.shadow_bad.labels(topic=m.topic).inc()
                    continue
                day = rec["day"]
                if self._bands_today is None or day > self._bands_today:
                    # a new day: what it expires goes before its entries meet (as ShadowJoin.step)
                    if self._bands_today is not None:
                        touched.update(self.bands.expire(day))
                    self._bands_today = day
                self._band_part[key] = m.partition
                evidence.extend(self.bands.add(key, rec))
                touched.add(key)
        items: dict[bytes, tuple[int, bytes | None]] = {}
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
        sends += await self.send_routed(s.topic_shadow_evidence, evidence_messages(evidence, s.partitions), "evidence")
        # behind the evidence: the day every source and stage 1 have passed, to every worker
        g0, g1 = self.marks_2.gate(own), self.marks_2_peers.gate(own)
        gate = None if g0 is None or g1 is None else min(g0, g1)
        sends += await self._forward_mark(2, s.topic_shadow_evidence, s.topic_shadow_bands, gate)
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

        held: dict[bytes, tuple[int, int, list, list]] = {}

        def restore(key: bytes, payload: bytes) -> tuple[int | bytes, list[int]]:
            if key.startswith(HOLD_PREFIX):  # contacts held for a later publication
                rec = orjson.loads(payload)
                d, q, _ = key[len(HOLD_PREFIX) :].split(b":")
                held[key] = (int(d), int(q), rec["x"], rec["m"])
                return key, []
            x = int(key)
            peers.restore(x, payload)
            return x, [peers.get(x)["last"]]

        topic = self.service.settings.topic_shadow_contacts
        part, today = self._recover(self.peers_table, topic, peers, restore, "competitor-number sketches")
        for key in held:
            part.pop(key, None)
        self.peers, self._peer_part, self._peers_today = peers, part, today
        self._held = held
        self._count_held()
        self._published = None  # (published again as of the next gate: only numbers that changed go out)
        self.marks_1.clear()  # (the sources send theirs again within HEARTBEAT_S)
        self._mark_sent.pop(1, None)
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
        self.marks_2.clear()
        self.marks_2_peers.clear()
        self._mark_sent.pop(2, None)
        self.service.metrics.shadow_band_keys.set(len(bands))
