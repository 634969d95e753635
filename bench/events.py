"""Deterministic benchmark input: call, SMS and recharge events in the wire contract.

One generator feeds every benchmark (in-process hot path, end to end, peers, catch-up), so the
input is identical for all of them. It is vectorised with numpy and needs no simulator plan, so it
scales to 1M subscribers and millions of events in seconds (``stream.tools.simulate`` plans a whole
synthetic operator first, which costs minutes and gigabytes at that size).

Shape of the traffic (deterministic for a seed):

* subscribers ``86138xxxxxxxx`` (our network), each with a circle of 8 peers on our network;
* mix: 66% calls, 31% SMS, 3% recharges (the simulator's mix is ~69/30/1; recharges are raised a
  little so that the recharge path is exercised at all in short runs);
* calls/SMS: 60% outgoing; peer in the circle 80%, another own number 15%, a competitor 5%;
  calls carry ``duration_s`` (1..600), ``imei`` and ``cell_id``; recharges ``amount`` and ``channel``;
* ``ts`` increases across the list (arrival order = event time order), spread over ``span_s``;
* ``cover_first=True`` makes the first ``n_subs`` events visit every subscriber once (a
  permutation), so a warm-up creates state for all of them.

``key_partition`` is Kafka's default partitioner (murmur2 of the key), so that events produced
straight into a partition are co-partitioned exactly as the Java/aiokafka default would place them.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "T0",
    "MSISDN0",
    "msisdn",
    "make_events",
    "hotline_event",
    "key_of",
    "murmur2",
    "key_partition",
    "EVENTS_PER_SUB_DAY",
    "sweep_calls",
    "populate_for_sweep",
]

# Shanghai midnight (same origin as bench/bench_engine.py)
T0 = 1_760_000_000 - (1_760_000_000 + 8 * 3600) % 86400
MSISDN0 = 8613800000000
PEER0 = 8613900000000
EVENTS_PER_SUB_DAY = 20  # "1M subscribers, about 20M events a day" (issue 6)
_CHANNELS = ("app", "card", "bank", "store")
_AMOUNTS = (10, 20, 30, 50, 100)
_COMP_PREFIX = (8613000000000, 8613300000000)  # cu / ct


def msisdn(s: int) -> str:
    return str(MSISDN0 + s)


def make_events(
    n_subs: int, n_events: int, seed: int, t_start: float, span_s: float, cover_first: bool = False, sub_offset: int = 0
) -> list[bytes]:
    """``n_events`` JSON events (bytes, no newline) for subscribers ``sub_offset .. sub_offset+n_subs-1``."""
    rng = np.random.default_rng(seed)
    subs = rng.integers(0, n_subs, n_events)
    if cover_first:
        k = min(n_subs, n_events)
        subs[:k] = rng.permutation(n_subs)[:k]
    subs += sub_offset
    u = rng.random(n_events)
    kind = np.where(u < 0.66, 0, np.where(u < 0.97, 1, 2))
    out = rng.random(n_events) < 0.6
    w = rng.random(n_events)
    circle = PEER0 + (subs * 7919 + rng.integers(0, 8, n_events) * 104729) % 100_000_000
    other = PEER0 + rng.integers(0, 100_000_000, n_events)
    comp = np.where(rng.random(n_events) < 0.5, _COMP_PREFIX[0], _COMP_PREFIX[1]) + rng.integers(
        0, 100_000_000, n_events
    )
    peer = np.where(w < 0.8, circle, np.where(w < 0.95, other, comp))
    dur = rng.integers(1, 601, n_events)
    cell = rng.integers(1000, 9999, n_events)
    amt = rng.integers(0, len(_AMOUNTS), n_events)
    chan = rng.integers(0, len(_CHANNELS), n_events)
    ts = (t_start + np.arange(n_events) * (span_s / max(1, n_events))).astype(np.int64)
    m_l = (MSISDN0 + subs).tolist()
    k_l, o_l, p_l, d_l, c_l, t_l = kind.tolist(), out.tolist(), peer.tolist(), dur.tolist(), cell.tolist(), ts.tolist()
    a_l, ch_l = amt.tolist(), chan.tolist()
    lines = []
    append = lines.append
    for j in range(n_events):
        k = k_l[j]
        m = m_l[j]
        if k == 0:
            append(
                f'{{"type":"call","msisdn":"{m}","ts":{t_l[j]},"direction":"{"out" if o_l[j] else "in"}","peer":"{p_l[j]}",'
                f'"duration_s":{d_l[j]},"imei":"{m + 356000000000000 - MSISDN0}","cell_id":"46000-{c_l[j]}"}}'
            )
        elif k == 1:
            append(
                f'{{"type":"sms","msisdn":"{m}","ts":{t_l[j]},"direction":"{"out" if o_l[j] else "in"}","peer":"{p_l[j]}"}}'
            )
        else:
            append(
                f'{{"type":"recharge","msisdn":"{m}","ts":{t_l[j]},"amount":{_AMOUNTS[a_l[j]]},"channel":"{_CHANNELS[ch_l[j]]}"}}'
            )
    return "\n".join(lines).encode().split(b"\n") if lines else []


def hotline_event(s: int, ts: int, sent_at: float | None = None) -> bytes:
    """An outgoing call to a competitor's care hotline (10010): trips ``competitor_hotline`` (alarm)."""
    extra = f',"bench_sent_at":{sent_at:.6f}' if sent_at is not None else ""
    return (
        f'{{"type":"call","msisdn":"{MSISDN0 + s}","ts":{ts},"direction":"out","peer":"10010","duration_s":42{extra}}}'
    ).encode()


def sweep_calls(day: int, subs, base: int) -> list[bytes]:
    """The sweep set-up's events: one outgoing call per subscriber of ``subs`` on ``day``, a
    millisecond apart (``base``: the position of ``subs[0]`` in the day's list)."""
    return [
        (
            f'{{"type":"call","msisdn":"{MSISDN0 + s}","ts":{T0 + day * 86400 + 3600 + (base + j) // 1000},'
            f'"direction":"out","peer":"{PEER0 + s}","duration_s":60}}'
        ).encode()
        for j, s in enumerate(subs)
    ]


def populate_for_sweep(eng, n: int, batch: int = 50_000) -> None:
    """The sweep set-up of the engine ``eng``: one call per subscriber on day 8, 1% of them only a
    week earlier (day 0: silent by the sweep), and one subscriber per day in between to move the
    watermark on (a day at most per step)."""
    for day in range(9):
        if day == 0:
            subs = list(range(0, n, 100))
        elif day == 8:
            subs = [s for s in range(n) if s % 100]
        else:
            subs = [n + day]
        for i in range(0, len(subs), batch):
            b, _ = eng.decode(sweep_calls(day, subs[i : i + batch], i))
            eng.apply(b)


TOPIC_OF_TYPE = {b"call": 0, b"sms": 1, b"recharge": 2}


def kind_of(value: bytes) -> int:
    """0 calls, 1 sms, 2 recharges (from the fixed layout of the generated lines)."""
    t = value[9:13]
    return 0 if t == b"call" else (1 if t == b'sms"' else 2)


def key_of(value: bytes) -> bytes:
    """The msisdn of a generated line (fixed layout: ``..."msisdn":"<13 digits>"...``)."""
    i = value.index(b'"msisdn":"') + 10
    return value[i : value.index(b'"', i)]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (as in the Java client and aiokafka's DefaultPartitioner)."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = seed ^ length
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (
            (data[i4] & 0xFF)
            + ((data[i4 + 1] & 0xFF) << 8)
            + ((data[i4 + 2] & 0xFF) << 16)
            + ((data[i4 + 3] & 0xFF) << 24)
        )
        k = (k * m) & 0xFFFFFFFF
        k ^= (k % 0x100000000) >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    if extra >= 3:
        h ^= (data[(length & ~3) + 2] & 0xFF) << 16
    if extra >= 2:
        h ^= (data[(length & ~3) + 1] & 0xFF) << 8
    if extra >= 1:
        h ^= data[length & ~3] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= (h % 0x100000000) >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= (h % 0x100000000) >> 15
    return h


def key_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
