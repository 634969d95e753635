"""A tiny synthetic event generator for the engine tests (deterministic from a seed)."""

from __future__ import annotations

import random

import orjson

T0 = 1_760_000_000 - (1_760_000_000 + 8 * 3600) % 86400  # a Shanghai midnight (2025-10-09 00:00 +08)
DAY = 86400
OWN = "86138"  # own-network prefix
CU = "86130"  # competitor prefix


def num(prefix: str, i: int) -> str:
    return f"{prefix}{i:08d}"


def call(m, ts, peer, out=True, dur=60, **kw):
    e = {"type": "call", "msisdn": m, "ts": ts, "direction": "out" if out else "in", "peer": peer, "duration_s": dur}
    e.update(kw)
    return e


def sms(m, ts, peer, out=True, **kw):
    e = {"type": "sms", "msisdn": m, "ts": ts, "direction": "out" if out else "in", "peer": peer}
    e.update(kw)
    return e


def recharge(m, ts, amount=50):
    return {"type": "recharge", "msisdn": m, "ts": ts, "amount": amount}


def profile(m, ts, plan="postpaid", **kw):
    e = {"type": "profile", "msisdn": m, "ts": ts, "plan": plan}
    e.update(kw)
    return e


def daily_life(m, day0, ndays, rng, circle, per_day=6, imei=None, skip_days=(), start=T0, dur=120):
    """A regular subscriber: per day a few calls/SMS to its circle, both directions."""
    ev = []
    for d in range(day0, day0 + ndays):
        if d in skip_days:
            continue
        for k in range(per_day):
            ts = start + d * DAY + 8 * 3600 + k * 1800 + rng.randint(0, 900)
            peer = circle[(d + k) % len(circle)]
            if k % 3 == 2:
                ev.append(sms(m, ts, peer, out=bool(k % 2)))
            else:
                kw = {"imei": imei} if imei else {}
                ev.append(call(m, ts, peer, out=bool(k % 2) or k == 0, dur=dur, **kw))
    return ev


def random_stream(
    seed: int,
    n_subs: int = 4,
    n_days: int = 45,
    per_day: int = 4,
    jitter_s: int = 6 * 3600,
    bad_rate: float = 0.02,
    late_rate: float = 0.01,
    future_rate: float = 0.01,
    outage: tuple[int, int] | None = None,
):
    """A random mix of all event kinds, arrival order = ts + random delay (out of order), with a few
    invalid, late and future events; ``outage``: days [a, b) with no event at all (the feed lost them).
    Returns raw bytes lines."""
    rng = random.Random(seed)
    subs = [num(OWN, 1000 + i) for i in range(n_subs)]
    peers = (
        [num(OWN, 5000 + i) for i in range(12)] + [num(CU, 7000 + i) for i in range(8)] + ["10086", "10010", "10000"]
    )
    imeis = [f"35{rng.randrange(10**12, 10**13)}" for _ in range(n_subs + 1)]
    events = []
    active_until = {m: rng.choice([n_days, n_days, rng.randint(n_days // 3, n_days)]) for m in subs}
    for m in subs:
        events.append(
            profile(
                m,
                T0 + rng.randint(0, 3600),
                plan=rng.choice(["prepaid", "postpaid"]),
                activated="2020-05-01",
                arpu=rng.choice([30, 80, 200]),
                key_group_member=rng.random() < 0.2,
            )
        )
        circle = rng.sample(peers[:-3], 5)
        im = rng.choice(imeis)
        for d in range(n_days):
            if d >= active_until[m]:
                break
            for _ in range(rng.randint(0, per_day)):
                ts = T0 + d * DAY + rng.randint(0, DAY - 1) + rng.random() * rng.choice([0, 1])
                peer = rng.choice(circle) if rng.random() < 0.7 else rng.choice(peers)
                r = rng.random()
                if r < 0.6:
                    kw = {"imei": im if rng.random() < 0.9 else rng.choice(imeis)} if rng.random() < 0.8 else {}
                    if rng.random() < 0.3:
                        kw["peer_operator"] = rng.choice(["own", "cu", "ct"])
                    events.append(call(m, ts, peer, out=rng.random() < 0.6, dur=rng.randint(0, 900), **kw))
                elif r < 0.9:
                    events.append(sms(m, ts, peer, out=rng.random() < 0.5))
                else:
                    events.append(recharge(m, ts, amount=rng.choice([10, 30, 50, 100.5])))
            if rng.random() < 0.03:
                events.append(
                    profile(
                        m,
                        T0 + d * DAY + rng.randint(0, DAY - 1),
                        plan=rng.choice(["prepaid", "postpaid"]),
                        arpu=rng.choice([30, 80, 200]),
                    )
                )
    if outage is not None:
        lo, hi = T0 + outage[0] * DAY, T0 + outage[1] * DAY
        events = [e for e in events if not lo <= e["ts"] < hi]
    arrivals = [(e["ts"] + rng.randint(0, jitter_s), i, e) for i, e in enumerate(events)]
    arrivals.sort(key=lambda x: (x[0], x[1]))
    lines = [orjson.dumps(e) for _, _, e in arrivals]
    out = []
    for ln in lines:
        out.append(ln)
        r = rng.random()
        if r < bad_rate:
            out.append(
                rng.choice(
                    [
                        b"{not json",
                        b"[1,2]",
                        b'{"type":"fax","msisdn":"1"}',
                        b'{"type":"call"}',
                        b'{"type":"call","msisdn":"8613800001000","ts":true,"direction":"out","peer":"1","duration_s":1}',
                    ]
                )
            )
        elif r < bad_rate + late_rate:
            e = orjson.loads(ln)
            e["ts"] = e["ts"] - 50 * DAY
            out.append(orjson.dumps(e))
        elif r < bad_rate + late_rate + future_rate:
            e = orjson.loads(ln)
            e["ts"] = e["ts"] + 5 * DAY
            out.append(orjson.dumps(e))
    return out
