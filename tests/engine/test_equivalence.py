"""Property tests: the vectorised engine and the plain-Python reference engine give the same state,
rejects and alarms on random event streams (out of order, late, future, invalid, replayed)."""

from __future__ import annotations

import os

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.engine import Engine, ReferenceEngine

from .gen import DAY, T0, random_stream
from .helpers import CLOCK, quiet_config

# ENGINE_EXAMPLES=500 for a longer search
SETTINGS = settings(
    max_examples=int(os.environ.get("ENGINE_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def compare(raws, batch_sizes, cfg, srcs=None, offsets=None, sweeps_at_rollover=True, extra=None, judged_lag=None):
    """``judged_lag``: days the decisions lag the watermark (a worker reading ahead of them): the
    care-line dials past them wait in the state and are judged (``judge_dials``) after each batch."""
    E = Engine(cfg, clock=lambda: CLOCK)
    R = ReferenceEngine(cfg, clock=lambda: CLOCK)
    i = 0
    k = 0
    last_day = None
    while i < len(raws):
        bs = batch_sizes[k % len(batch_sizes)]
        k += 1
        chunk = raws[i : i + bs]
        kw = {}
        if srcs is not None:
            kw = {"src": srcs[i : i + bs], "offsets": offsets[i : i + bs]}
        i += bs
        outs = []
        for eng in (E, R):
            b, rej = eng.decode(chunk, **kw)
            lag = None if judged_lag is None or eng.watermark_s is None else eng.day_of(eng.watermark_s) - judged_lag
            ap = eng.apply(b, judged_through=lag)
            hits = [(eng.msisdns([r])[0], d, ts, n) for r, d, ts, n in ap.immediate]
            al = eng.immediate(ap.immediate) + eng.evaluate(ap.rows)
            contacts = [c.tolist() for c in ap.contacts]  # (the second-SIM join's, with their epochs)
            judged = ([], [])
            if judged_lag is not None and eng.watermark_s is not None:
                jh, jr = eng.judge_dials(eng.day_of(eng.watermark_s) - judged_lag)
                judged = ([(eng.msisdns([r])[0], d, ts, n) for r, d, ts, n in jh], sorted(eng.msisdns(jr)))
                al += eng.immediate(jh)
            outs.append((rej, ap.rejects, ap.skipped, sorted(eng.msisdns(ap.rows)), hits, al, contacts, judged))
        assert outs[0] == outs[1]
        if sweeps_at_rollover and E.watermark_s is not None:
            d = E.day_of(E.watermark_s)
            if last_day is not None and d > last_day:
                for dd in range(last_day + 1, d + 1):
                    now = cfg.day_start_s(dd)
                    assert E.sweep(now) == R.sweep(now)
            last_day = d if last_day is None else max(last_day, d)
        if extra is not None:
            extra(E, R, k)
    assert E.watermark_s == R.watermark_s
    if E.watermark_s is not None:
        for dd in (1, 8, 15, 22, 40):
            now = E.watermark_s + dd * DAY
            assert E.sweep(now) == R.sweep(now)
    assert len(E) == len(R)
    for m in R._subs:
        assert E.state_of(m) == R.state_of(m), m
        assert E.view(m) == R.view(m)
    assert E.counters == R.counters
    return E, R


# recharge-lapse priors, the lapse shown by fading traffic and the long-memory circle drift (issue 13):
# the defaults, priors off, and every branch on (a prior for subscribers with no recharge, blended into
# the own interval, not from the amount; drift at two thresholds and old windows; the decline rule at
# two factors)
PRIORS = {
    "default": {},
    "off": {"recharge_prior_days": 0.0},
    "all": {
        "recharge_prior_unseen": True,
        "recharge_prior_weight": 1.5,
        "recharge_min_count": 3,
        "drift_threshold": 0.3,
        "drift_min_weight": 2,
        "drift_old_days": 45,
        "drop_min_z": 1.0,
        "lapse_decline_factor": 1.0,
        "lapse_decline_drop": 0.1,
        "lapse_decline_tail": 0.0,
    },
    "flat": {
        "recharge_prior_from_amount": False,
        "recharge_prior_days": 9.0,
        "recharge_prior_unseen": True,
        "drift_threshold": 0.01,
        "drift_min_weight": 1,
        "drift_old_days": 42,
        "drop_min_z": 0.2,
        "lapse_decline_factor": 1.05,
    },
}


@SETTINGS
@given(
    seed=st.integers(0, 10**6),
    n_subs=st.integers(1, 6),
    n_days=st.integers(1, 70),
    per_day=st.integers(0, 6),
    jitter_h=st.integers(0, 72),
    batch_sizes=st.lists(st.integers(1, 80), min_size=1, max_size=4),
    noise=st.floats(0, 0.1),
    holidays=st.booleans(),
    priors=st.sampled_from(sorted(PRIORS)),
    outage=st.booleans(),
    judged_lag=st.sampled_from([None, 1, 3]),
)
def test_random_streams(
    seed, n_subs, n_days, per_day, jitter_h, batch_sizes, noise, holidays, priors, outage, judged_lag
):
    # outage: the feed loses days 20-23 and a few events a day count as a population (void_min_events
    # 4, void_min_recharges 1), so that void days and lost recharges (feed outages) are found, by the
    # outage and by chance on quiet days
    raws = random_stream(
        seed,
        n_subs=n_subs,
        n_days=n_days,
        per_day=per_day,
        jitter_s=jitter_h * 3600,
        bad_rate=noise,
        late_rate=noise,
        future_rate=noise,
        outage=(20, 24) if outage else None,
    )
    void = {"void_min_events": 4, "void_min_recharges": 1} if outage else {}
    cfg = quiet_config(holidays=(("2025-10-20", "2025-10-30"),) if holidays else (), **PRIORS[priors], **void)
    compare(raws, batch_sizes, cfg, judged_lag=judged_lag)


# small hand-drawn streams: few subscribers, few peers (bucket collisions), shared handsets, days in a
# narrow range, any arrival order
SUBS = [f"86138000000{i:02d}" for i in range(6)]
PEERS = [f"8613{i:09d}" for i in range(0, 40, 3)] + ["10010", "10086", "8613012345678"]
IMEIS = [None, "356000000000001", "356000000000002", "356000000000003"]


@st.composite
def events(draw):
    n = draw(st.integers(1, 120))
    out = []
    for _ in range(n):
        m = draw(st.sampled_from(SUBS))
        ts = T0 + draw(st.integers(0, 45 * 24)) * 3600 + draw(st.integers(0, 3599))
        kind = draw(st.sampled_from(["call", "call", "sms", "recharge", "profile"]))
        e = {"type": kind, "msisdn": m, "ts": ts}
        if kind in ("call", "sms"):
            e["direction"] = draw(st.sampled_from(["out", "in"]))
            e["peer"] = draw(st.sampled_from(PEERS))
        if kind == "call":
            e["duration_s"] = draw(st.integers(0, 5000))
            im = draw(st.sampled_from(IMEIS))
            if im:
                e["imei"] = im
        elif kind == "recharge":
            e["amount"] = draw(st.sampled_from([1, 10.5, 50]))
        elif kind == "profile":
            e["plan"] = draw(st.sampled_from(["prepaid", "postpaid"]))
            e["arpu"] = draw(st.sampled_from([0, 70, 200]))
        out.append(orjson.dumps(e))
    return out


@SETTINGS
@given(
    raws=events(),
    batch_sizes=st.lists(st.integers(1, 30), min_size=1, max_size=3),
    max_future_h=st.sampled_from([6, 48, 2000]),
    replay=st.booleans(),
    priors=st.sampled_from(sorted(PRIORS)),
    judged_lag=st.sampled_from([None, 3, 10]),
    data=st.data(),
)
def test_hand_drawn_streams(raws, batch_sizes, max_future_h, replay, priors, judged_lag, data):
    cfg = quiet_config(max_future_s=max_future_h * 3600.0, max_watermark_jump_s=max_future_h * 3600.0, **PRIORS[priors])
    n = len(raws)
    src = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=np.int64)
    off = np.arange(n, dtype=np.int64) * 2
    if replay:  # a crash: part of the input comes again with the same offsets
        cut = data.draw(st.integers(0, n))
        back = data.draw(st.integers(0, cut))
        raws = raws[:cut] + raws[back:]
        src = np.r_[src[:cut], src[back:]]
        off = np.r_[off[:cut], off[back:]]
    compare(raws, batch_sizes, cfg, srcs=src, offsets=off, judged_lag=judged_lag)


@SETTINGS
@given(
    raws=events(),
    batch_sizes=st.lists(st.integers(1, 30), min_size=1, max_size=3),
    ops=st.lists(
        st.tuples(st.sampled_from(["forget", "restore", "none"]), st.sampled_from(SUBS)), min_size=1, max_size=8
    ),
)
def test_forget_and_restore_mid_stream(raws, batch_sizes, ops):
    """Dropping a subscriber (lost partition) or restoring one from its own snapshot (changelog
    recovery) keeps both engines in step, the IMEI index included."""

    def extra(E, R, k):
        op, m = ops[k % len(ops)]
        if op == "forget":
            E.forget([m])
            R.forget([m])
        elif op == "restore" and m in E:
            E.restore(m, E.snapshot(m))
            R.restore(m, R.snapshot(m))
        assert (m in E) == (m in R) and len(E) == len(R)

    compare(raws, batch_sizes, quiet_config(), extra=extra)


@SETTINGS
@given(seed=st.integers(0, 10**6), batch=st.integers(5, 60), cut=st.integers(1, 10))
def test_snapshot_restore_mid_stream(seed, batch, cut):
    """A subscriber restored from a snapshot in a fresh engine continues exactly like the original."""
    cfg = quiet_config()
    raws = random_stream(seed, n_subs=3, n_days=30, per_day=4, bad_rate=0, late_rate=0, future_rate=0)
    A = Engine(cfg, clock=lambda: CLOCK)
    B = Engine(cfg, clock=lambda: CLOCK)
    k = cut * batch
    for eng in (A,):
        b, _ = eng.decode(raws[:k])
        eng.evaluate(eng.apply(b).rows)
    for m in list(A._row):
        B.restore(m, A.snapshot(m))
        assert B.state_of(m) == A.state_of(m)
    # B has no watermark nor sequence yet (engine-level, not per subscriber): give it A's
    B._wm = A._wm
    B._seq = A._seq
    b1, _ = A.decode(raws[k:])
    b2, _ = B.decode(raws[k:])
    A.evaluate(A.apply(b1).rows)
    B.evaluate(B.apply(b2).rows)
    for m in A._row:
        assert A.state_of(m) == B.state_of(m)
