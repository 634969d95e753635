"""One simulated day: the planned world's events of day ``d`` as columns (vectorised, one generator)."""

from __future__ import annotations

import datetime as _dt

import numpy as np

from .plan import _CALL, _OP_NONE, _RECHARGE, _SMS, DAY_S, TZ_OFFSET_S, _World
from .profile import Profile

_BUSINESS_P = np.where((np.arange(24) >= 9) & (np.arange(24) < 20), 1.0, 0.0)
_BUSINESS_P = _BUSINESS_P / _BUSINESS_P.sum()


class _Rhythm:
    """A profile's arrays for the day loop (hour-of-day and weekday traffic profile)."""

    def __init__(self, prof: Profile) -> None:
        hour_w = np.array(prof.hour_weights)
        self.hour_p = hour_w / hour_w.sum()  # hour-of-day profile (local time) of person-to-person traffic
        self.weekday_factor = np.array(prof.weekday_factor)  # Mon..Sun


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


def _times(rng: np.random.Generator, day_ts: int, k: int, p: np.ndarray) -> np.ndarray:
    hours = rng.choice(24, k, p=p)
    return day_ts + hours * 3600 + rng.integers(0, 3600, k)


def _durations(rng: np.random.Generator, k: int, prof: Profile) -> np.ndarray:
    dur = np.clip(rng.lognormal(np.log(prof.call_duration[0]), prof.call_duration[1], k), 1, 7200).astype(np.int64)
    dur[rng.random(k) < prof.unanswered_share] = 0
    return dur


def _lateness(rng: np.random.Generator, k: int, prof: Profile) -> np.ndarray:
    """Arrival delay (s): on time (exponential), minutes late (lognormal), 1-12 h, 12-30 h."""
    b_min, b_hours, b_day = prof.late_breaks
    u = rng.random(k)
    delay = rng.exponential(prof.on_time_mean_s, k) + 1
    m = (u >= b_min) & (u < b_hours)
    delay[m] = np.clip(rng.lognormal(np.log(prof.late_minutes[0]), prof.late_minutes[1], int(m.sum())), 60, 4 * 3600)
    m = (u >= b_hours) & (u < b_day)
    delay[m] = rng.uniform(3600, 12 * 3600, int(m.sum()))
    m = u >= b_day
    delay[m] = rng.uniform(12 * 3600, 30 * 3600, int(m.sum()))
    return delay.astype(np.int64)


class _Day:
    """Day ``d``'s draws shared by every kind of traffic (activity, handsets, cells) and its buffer."""

    def __init__(self, w: _World, rng: np.random.Generator, d: int, rhythm: _Rhythm) -> None:
        n, prof = w.n, w.profile
        self.w, self.rng, self.d, self.prof, self.hour_p = w, rng, d, prof, rhythm.hour_p
        self.day_ts = day_ts = w.start_ts + d * DAY_S
        self.buf = _Buf()
        weekday = _dt.datetime.fromtimestamp(day_ts + TZ_OFFSET_S, tz=_dt.UTC).weekday()
        shape = prof.daily_noise_shape
        self.a = w.act[:, d] * rhythm.weekday_factor[weekday] * rng.gamma(shape, 1 / shape, n)
        self.imei_today = np.where(d >= w.change_day, w.imei_new, w.imei_old)
        cell_pick = w.cells[np.arange(n), rng.choice(3, n, p=list(prof.cell_share))]
        self.cell_today = np.where(w.quiet[:, d], w.away_cell, cell_pick)
        self.status_d = w.status[:, d]
        self.act_d = w.act[:, d]
        self.s_d = w.shadow_s[:, d]

    def times(self, k: int, p: np.ndarray | None = None) -> np.ndarray:
        return _times(self.rng, self.day_ts, k, self.hour_p if p is None else p)

    def durations(self, kind: int, k: int) -> np.ndarray | None:
        """Call durations (drawn only for calls)."""
        return _durations(self.rng, k, self.prof) if kind == _CALL else None

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
    dur = _durations(rng, k, day.prof) if kind == _CALL else np.zeros(k, dtype=np.int64)
    op = w.num_op[peer].astype(np.int8)
    keep = np.ones(k, dtype=bool)
    pop = peer < n
    pj = np.where(pop, peer, 0)
    # callee inside the population: presence thinning, porting and migration to the shadow
    u = rng.random(k)
    active_peer = pop & (status_d[pj] == 0)
    accepted = active_peer & (u < np.minimum(1.0, day.act_d[pj]))
    ported = pop & (status_d[pj] == 1)
    keep_ported = ported & (u < day.prof.ported_still_called)
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
    cnt = rng.poisson(base * day.a * day.prof.incoming_factor)
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
    cnt = rng.poisson(base[sw] * s_d[sw] * day.prof.shadow_contact_rate)
    owner = np.repeat(sw, cnt)
    contact = _pick_contacts(w, rng, owner)
    ok = contact < w.n
    cj = np.where(ok, contact, 0)
    ok &= (day.status_d[cj] == 0) & (rng.random(contact.size) < np.minimum(1.0, day.act_d[cj]))
    owner, contact = owner[ok], contact[ok]
    k = owner.size
    ts = day.times(k)
    day.add(kind, contact, 1, w.shadow[owner], w.rival[owner], ts, day.durations(kind, k))


def _simulate_day(w: _World, rng: np.random.Generator, d: int, rhythm: _Rhythm) -> dict[str, np.ndarray]:
    day = _Day(w, rng, d, rhythm)
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
        day.add(_CALL, who, 0, peer, w.num_op[peer], day.times(k), _durations(rng, k, day.prof))

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
