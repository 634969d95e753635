"""One simulated day: the planned world's events of day ``d`` as columns (vectorised, one generator)."""

from __future__ import annotations

import datetime as _dt

import numpy as np

from .plan import _CALL, _OP_NONE, _RECHARGE, _SMS, DAY_S, TZ_OFFSET_S, _World

# Hour-of-day profile (local time) of person-to-person traffic.
_HOUR_W = np.array(
    [
        0.6,
        0.3,
        0.2,
        0.15,
        0.15,
        0.3,
        0.9,
        2.2,
        4.0,
        5.5,
        6.3,
        6.6,
        5.8,
        5.2,
        5.5,
        5.7,
        5.8,
        6.0,
        6.3,
        6.9,
        7.1,
        6.3,
        4.2,
        1.9,
    ]
)
_HOUR_P = _HOUR_W / _HOUR_W.sum()
_BUSINESS_P = np.where((np.arange(24) >= 9) & (np.arange(24) < 20), 1.0, 0.0)
_BUSINESS_P = _BUSINESS_P / _BUSINESS_P.sum()
_WEEKDAY_FACTOR = np.array([1.0, 1.0, 1.0, 1.0, 1.03, 0.9, 0.85])  # Mon..Sun

_COLS = ("kind", "sub", "dir", "peer", "op", "ts", "dur", "imei", "cell", "amount", "chan")


class _Buf:
    """Column chunks of one day's events."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {c: [] for c in _COLS}

    def add(self, *, kind, sub, dir, peer, op, ts, dur=None, imei=None, cell=None, amount=None, chan=None) -> None:
        k = np.asarray(sub).size
        if k == 0:
            return
        full = lambda v, fill, dt: (
            np.full(k, fill, dtype=dt) if v is None else np.broadcast_to(np.asarray(v, dtype=dt), (k,))
        )  # noqa: E731
        self.parts["kind"].append(full(kind, 0, np.int8))
        self.parts["sub"].append(full(sub, 0, np.int64))
        self.parts["dir"].append(full(dir, 0, np.int8))
        self.parts["peer"].append(full(peer, -1, np.int64))
        self.parts["op"].append(full(op, -1, np.int8))
        self.parts["ts"].append(full(ts, 0, np.int64))
        self.parts["dur"].append(full(dur, 0, np.int64))
        self.parts["imei"].append(full(imei, -1, np.int64))
        self.parts["cell"].append(full(cell, -1, np.int64))
        self.parts["amount"].append(full(amount, 0, np.int64))
        self.parts["chan"].append(full(chan, -1, np.int8))

    def columns(self) -> dict[str, np.ndarray]:
        return {c: (np.concatenate(v) if v else np.empty(0, dtype=np.int64)) for c, v in self.parts.items()}


def _pick_contacts(w: _World, rng: np.random.Generator, who: np.ndarray) -> np.ndarray:
    u = rng.random(who.size) * w.c_tot[who]
    idx = np.searchsorted(w.c_cum, w.c_cum0[who] + u, side="right")
    idx = np.minimum(idx, w.indptr[who + 1] - 1)
    return w.c_peer[idx]


def _times(rng: np.random.Generator, day_ts: int, k: int, p=_HOUR_P) -> np.ndarray:
    hours = rng.choice(24, k, p=p)
    return day_ts + hours * 3600 + rng.integers(0, 3600, k)


def _durations(rng: np.random.Generator, k: int) -> np.ndarray:
    dur = np.clip(rng.lognormal(np.log(75), 1.0, k), 1, 7200).astype(np.int64)
    dur[rng.random(k) < 0.12] = 0
    return dur


def _lateness(rng: np.random.Generator, k: int) -> np.ndarray:
    u = rng.random(k)
    delay = rng.exponential(20.0, k) + 1
    m = (u >= 0.85) & (u < 0.97)
    delay[m] = np.clip(rng.lognormal(np.log(1200), 0.9, int(m.sum())), 60, 4 * 3600)
    m = (u >= 0.97) & (u < 0.997)
    delay[m] = rng.uniform(3600, 12 * 3600, int(m.sum()))
    m = u >= 0.997
    delay[m] = rng.uniform(12 * 3600, 30 * 3600, int(m.sum()))
    return delay.astype(np.int64)


class _Day:
    """Day ``d``'s draws shared by every kind of traffic (activity, handsets, cells) and its buffer."""

    def __init__(self, w: _World, rng: np.random.Generator, d: int) -> None:
        n = w.n
        self.w, self.rng, self.d = w, rng, d
        self.day_ts = day_ts = w.start_ts + d * DAY_S
        self.buf = _Buf()
        weekday = _dt.datetime.fromtimestamp(day_ts + TZ_OFFSET_S, tz=_dt.UTC).weekday()
        self.a = w.act[:, d] * _WEEKDAY_FACTOR[weekday] * rng.gamma(6.0, 1 / 6.0, n)
        self.imei_today = np.where(d >= w.change_day, w.imei_new, w.imei_old)
        cell_pick = w.cells[np.arange(n), rng.choice(3, n, p=[0.6, 0.3, 0.1])]
        self.cell_today = np.where(w.quiet[:, d], w.away_cell, cell_pick)
        self.status_d = w.status[:, d]
        self.act_d = w.act[:, d]
        self.s_d = w.shadow_s[:, d]

    def times(self, k: int, p=_HOUR_P) -> np.ndarray:
        return _times(self.rng, self.day_ts, k, p)

    def durations(self, kind: int, k: int) -> np.ndarray | None:
        """Call durations (drawn only for calls)."""
        return _durations(self.rng, k) if kind == _CALL else None

    def add(self, kind: int, sub, dir: int, peer, op, ts, dur=None) -> None:
        """Events of ``sub``; a call also carries its duration and the subscriber's handset and cell today."""
        if kind == _CALL:
            self.buf.add(
                kind=kind,
                sub=sub,
                dir=dir,
                peer=peer,
                op=op,
                ts=ts,
                dur=dur,
                imei=self.imei_today[sub],
                cell=self.cell_today[sub],
            )
        else:
            self.buf.add(kind=kind, sub=sub, dir=dir, peer=peer, op=op, ts=ts)


def _outgoing(day: _Day, kind: int, base: np.ndarray) -> None:
    """Our subscribers' person-to-person traffic, and its mirror for callees who are ours too."""
    w, rng, n = day.w, day.rng, day.w.n
    status_d = day.status_d
    cnt = rng.poisson(base * day.a)
    who = np.repeat(np.arange(n), cnt)
    peer = _pick_contacts(w, rng, who)
    k = who.size
    ts = day.times(k)
    dur = _durations(rng, k) if kind == _CALL else np.zeros(k, dtype=np.int64)
    op = w.num_op[peer].astype(np.int8)
    keep = np.ones(k, dtype=bool)
    pop = peer < n
    pj = np.where(pop, peer, 0)
    # callee inside the population: presence thinning, porting and migration to the shadow
    u = rng.random(k)
    active_peer = pop & (status_d[pj] == 0)
    accepted = active_peer & (u < np.minimum(1.0, day.act_d[pj]))
    ported = pop & (status_d[pj] == 1)
    keep_ported = ported & (u < 0.7)
    has_shadow = pop & (w.shadow[pj] >= 0)
    redirect = has_shadow & ~accepted & (rng.random(k) < np.where(status_d[pj] == 2, 0.9, day.s_d[pj]))
    peer = np.where(redirect, w.shadow[pj], peer)
    op = np.where(redirect, w.rival[pj], op).astype(np.int8)
    op = np.where(keep_ported, w.rival[pj], op).astype(np.int8)
    keep &= ~pop | accepted | keep_ported | redirect
    if kind == _SMS:  # nobody texts the bank or the care line
        keep &= (op != _OP_NONE) & (peer != w.service0)
    who, peer, op, ts, dur = who[keep], peer[keep], op[keep], ts[keep], dur[keep]
    mirror_ok = accepted[keep] & ~redirect[keep]  # both sides ours and on the network: the callee's "in" CDR
    day.add(kind, who, 0, peer, op, ts, dur)
    day.add(kind, peer[mirror_ok], 1, who[mirror_ok], 0, ts[mirror_ok], dur[mirror_ok])


def _incoming(day: _Day, kind: int, base: np.ndarray) -> None:
    """Traffic from outside numbers (competitor contacts, own numbers outside the population)."""
    w, rng, n = day.w, day.rng, day.w.n
    cnt = rng.poisson(base * day.a * 0.9)
    who = np.repeat(np.arange(n), cnt)
    peer = _pick_contacts(w, rng, who)
    op = w.num_op[peer]
    keep = (peer >= n) & (op != _OP_NONE)
    who, peer, op = who[keep], peer[keep], op[keep]
    k = who.size
    ts = day.times(k)
    day.add(kind, who, 1, peer, op, ts, day.durations(kind, k))


def _from_shadows(day: _Day, kind: int, base: np.ndarray) -> None:
    """The switchers' shadow numbers reaching their close contacts (our contacts' "in" events)."""
    w, rng, s_d = day.w, day.rng, day.s_d
    sw = np.flatnonzero(s_d > 0)
    if not sw.size:
        return
    cnt = rng.poisson(base[sw] * s_d[sw] * 1.1)
    owner = np.repeat(sw, cnt)
    contact = _pick_contacts(w, rng, owner)
    ok = contact < w.n
    cj = np.where(ok, contact, 0)
    ok &= (day.status_d[cj] == 0) & (rng.random(contact.size) < np.minimum(1.0, day.act_d[cj]))
    owner, contact = owner[ok], contact[ok]
    k = owner.size
    ts = day.times(k)
    day.add(kind, contact, 1, w.shadow[owner], w.rival[owner], ts, day.durations(kind, k))


def _simulate_day(w: _World, rng: np.random.Generator, d: int) -> dict[str, np.ndarray]:
    day = _Day(w, rng, d)
    for kind, base in ((_CALL, w.base_call), (_SMS, w.base_sms)):
        _outgoing(day, kind, base)
        _incoming(day, kind, base)
        _from_shadows(day, kind, base)

    # switchers: extra calls to competitor peers during the ramp
    bz = np.flatnonzero(w.boost[:, d] > 0)
    if bz.size:
        cnt = rng.poisson(w.boost[bz, d])
        who = np.repeat(bz, cnt)
        peer = w.rival_peers[who, rng.integers(0, 3, who.size)]
        k = who.size
        day.add(_CALL, who, 0, peer, w.num_op[peer], day.times(k), _durations(rng, k))

    # scheduled specials (care-line calls)
    for sub, peer, op, kind in w.specials.get(d, ()):
        t = int(day.times(1, _BUSINESS_P)[0])
        dur = int(np.clip(rng.lognormal(np.log(240), 0.6), 20, 3600))
        day.add(kind, np.array([sub]), 0, peer, op, t, dur)

    # own care line: occasional calls to 10086 happen through the service contacts above.
    rc = w.recharges.get(d)
    if rc:
        subs = np.array([r[0] for r in rc], dtype=np.int64)
        day.buf.add(
            kind=_RECHARGE,
            sub=subs,
            dir=0,
            peer=-1,
            op=-1,
            ts=day.times(subs.size, _BUSINESS_P),
            amount=np.array([r[1] for r in rc]),
            chan=np.array([r[2] for r in rc]),
        )
    return day.buf.columns()
