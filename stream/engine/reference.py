"""The plain-Python reference engine: dicts and lists, one event at a time, the same semantics as
:class:`stream.engine.core.Engine`. Slow and obvious on purpose; tests check that both agree.

It shares only the config and the (pure) decode module with the fast engine, and decodes with
``decode_exact``, the contract's rules field by field, where the fast engine runs the typed fast path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from stream.contract import KIND_CALL, KIND_PROFILE, KIND_RECHARGE, KIND_SMS, SCHEMA_VERSION, alarm_id
from stream.contract import PHASES as PHASE_NAMES
from stream.contract import SIGNALS as SIGNAL_ORDER

from . import shadow as _sh
from .config import EngineConfig
from .core import EVAL_CHUNK, GAP_CONFIRM, Applied, Decision
from .decode import Batch, Reject, decode_exact, mix64
from .handsets import LATEST, SWITCHED, Switch

__all__ = ["ReferenceEngine"]

K = 16
IMEI_INDEX_SIZE = 4
NODAY = -(2**31)
REASONS = ("competitor_switch", "seasonal", "low_usage", "arrears", "unknown")
TIERS = ("high", "mid", "low")
# ring counters: name, saturation
RING = (
    ("calls_out", 0xFFFF),
    ("calls_in", 0xFFFF),
    ("sec_out", 0xFFFFFFFF),
    ("sec_in", 0xFFFFFFFF),
    ("sms_out", 0xFFFF),
    ("sms_in", 0xFFFF),
    ("comp_n", 0xFFFF),
    ("hot_n", 0xFF),
    ("rch_n", 0xFF),
    ("rch_c", 0xFFFFFFFF),
    ("bits", None),
)
RI = {name: i for i, (name, _) in enumerate(RING)}


def _pop(x: int) -> int:
    return bin(x).count("1")


class _Sub:
    __slots__ = (
        "msisdn",
        "row",
        "ring",
        "circle",
        "imeis",
        "hwm",
        "first_day",
        "last_active",
        "rch_count",
        "rch_first",
        "rch_last",
        "rch_sum",
        "plan",
        "activated",
        "arpu_c",
        "key_group",
        "profile_ts",
        "dual_day",
        "dual_n",
        "phase",
        "episode",
        "last_emit_day",
        "last_emit_sev",
        "emitted",
        "clear_day",
        "sh_peer",
        "sh_first",
        "sh_day",
        "sh_mask",
        "sh_j",
        "sh_pub",
        "sh_hash",
        "rch_prev",
        "imm_day",
        "ep_day",
        "dual_prev",
        "sw_h",
        "sw_d",
        "dec_day",
        "dial_day",
        "dial_ts",
        "dial_n",
    )

    def __init__(self, msisdn: str, row: int) -> None:
        self.msisdn = msisdn
        self.row = row
        self.ring: dict[int, list[int]] = {}
        self.circle: dict[int, list] = {}  # bucket -> [peer, mask, last, sec, cnt, comp]
        self.imeis: list[list[int]] = []  # [[imei, day], ...] (<= 2)
        self.hwm = [-1, -1, -1, -1]
        self.first_day = 2**31 - 1
        self.last_active = NODAY
        self.rch_count = 0
        self.rch_first = math.inf
        self.rch_last = -math.inf
        self.rch_sum = 0
        self.plan, self.activated, self.arpu_c, self.key_group, self.profile_ts = 0, -1, -1, -1, -math.inf
        self.dual_day, self.dual_n = NODAY, 0
        self.phase, self.episode, self.last_emit_day, self.last_emit_sev, self.emitted = 0, 0, NODAY, 0, 0
        self.clear_day = NODAY  # first day of the current run of clear evaluations (recovery hysteresis)
        # second SIM: the confirmed shadow number, its first day, evidence day, circle buckets it
        # reaches, Jaccard (thousandths); the last band publication (day, circle hash)
        self.sh_peer, self.sh_first, self.sh_day, self.sh_mask, self.sh_j = 0, NODAY, NODAY, 0, 0
        self.sh_pub, self.sh_hash = NODAY, 0
        # decisions in event time: the latest recharge on a day before rch_last's day, the day of
        # the last immediate (care-line dial) alarm, the decision day the current episode began
        self.rch_prev, self.imm_day, self.ep_day = -math.inf, NODAY, NODAY
        self.dual_prev = NODAY  # the latest dual-SIM evidence day before dual_day
        self.sw_h, self.sw_d = 0, NODAY  # the handset this number last switched to, and the day
        self.dec_day = NODAY  # the last day decided for this subscriber (a worker may take it over)
        # a care-line dial waiting for the decisions to reach its point: day, time, dials counted
        self.dial_day, self.dial_ts, self.dial_n = NODAY, -math.inf, 0


def _national(v: int, cc: str) -> int:
    p = 10**_sh.NATIONAL_DIGITS
    return v % p if v // p == int(cc) else v


def _days_in(mask: int, last: int, lo: int, hi: int) -> int:
    """Contact days of a circle entry (bit j = day last - j) within days [lo, hi]."""
    if last == NODAY or hi < lo:
        return 0
    return sum(1 for d in range(max(lo, last - 63), min(hi, last) + 1) if mask >> (last - d) & 1)


def _traffic_drop(mt: dict, hol, base: list, span: list) -> tuple[float, int]:
    """(The sum over the metrics of the drop of ``span``'s daily mean against ``base``'s, how many
    metrics count): a metric counts when its base total reaches its minimum; holidays are left out."""
    nbase = sum(1 for d in base if d not in hol)
    nspan = sum(1 for d in span if d not in hol)
    tot, cnt = 0.0, 0
    for j, mn in enumerate((600, 10, 10, 10)):
        sb = sum(mt[d][0][j] for d in base if d not in hol)
        sp = sum(mt[d][0][j] for d in span if d not in hol)
        if sb >= mn:
            rb = sb / max(nbase, 1)
            rp = sp / max(nspan, 1)
            tot = tot + min(max(1.0 - rp / rb, 0.0), 1.0)
            cnt += 1
    return tot, cnt


class ReferenceEngine:
    def __init__(self, config: EngineConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or EngineConfig()
        self.clock = clock
        self.R = self.config.ring_days
        self._subs: dict[str, _Sub] = {}
        self._by_row: dict[int, _Sub] = {}
        self._next_row = 0
        self._index: dict[int, dict[str, int]] = {}  # imei -> {msisdn: day}
        self._switches: dict[int, dict[str, int]] = {}  # imei -> {msisdn: day it switched to it}
        self._wm: float | None = None
        self._gap: tuple[float, int] | None = None  # without a clock: a run of events past the future bound
        self._seq = 0
        self.shadow_publications: list[dict] = []
        self._extra: set[int] = set()
        self._hs_ops: list[Switch] = []
        self._hits: list = []
        self._judged_through: int | None = None  # apply's: the last day decided (dials past it wait)
        self.counters: dict[str, int] = {}
        self._void_memo: dict[int, tuple[list[int], list[int]]] = {}  # each decided day's void days

    # ---------------------------------------------------------------- basics
    def _count(self, k: str, n: int = 1) -> None:
        if n:
            self.counters[k] = self.counters.get(k, 0) + n

    def __iter__(self):
        """The msisdns the engine holds state for."""
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._subs)

    def __contains__(self, m) -> bool:
        return m in self._subs

    def row_of(self, m: str) -> int | None:
        s = self._subs.get(m)
        return None if s is None else s.row

    def msisdns(self, rows) -> list[str]:
        return [self._by_row[int(r)].msisdn for r in rows]

    def accepts(self, ts) -> np.ndarray:
        """Which of these event times apply (without a clock) would take as not in the future."""
        cfg = self.config
        bound = min(cfg.max_future_s, cfg.max_watermark_jump_s)
        wm, g, out = self._wm, self._gap, []
        for t in map(float, ts):
            ok = wm is None or t <= wm + bound
            if not ok:
                g = (g[0], g[1] + 1) if g is not None and abs(t - g[0]) <= bound else (t, 1)
                ok = g[1] >= GAP_CONFIRM
            if ok:
                g = None
                wm = t if wm is None else max(wm, t)
            out.append(ok)
        return np.array(out, dtype=bool)

    @property
    def watermark_s(self):
        return self._wm

    def advance_watermark(self, ts: float) -> None:
        self._wm = float(ts) if self._wm is None else max(self._wm, float(ts))

    def day_of(self, ts: float) -> int:
        return self.config.day_of(ts)

    def _fday(self, ts: float) -> float:
        return math.floor((ts + self.config.utc_offset_s) / 86400.0) if math.isfinite(ts) else ts

    def _now(self) -> float:
        if self.clock is not None:
            return float(self.clock())
        return float(self._wm) if self._wm is not None else 0.0

    @property
    def state_bytes_per_subscriber(self) -> int:
        return 0  # not columnar

    def decode(self, raws: Sequence[bytes], keys=None, src=None, offsets=None):
        batch, rejects = decode_exact(raws, keys, src, offsets, config=self.config, seq_start=self._seq)
        if offsets is None:
            self._seq += len(raws)
        for r in rejects:
            self._count("rejected_" + r.reason)
        return batch, rejects

    def _new_sub(self, m: str) -> _Sub:
        s = _Sub(m, self._next_row)
        self._next_row += 1
        self._subs[m] = s
        self._by_row[s.row] = s
        return s

    # ---------------------------------------------------------------- apply, one event at a time
    def apply(self, batch: Batch, judged_through: int | None = None) -> Applied:
        cfg = self.config
        F = cfg.max_future_s
        jump = cfg.max_watermark_jump_s
        rejects: list[Reject] = []
        skipped = 0
        self._hits = []
        self._judged_through = judged_through
        contacts: list[tuple[int, int, int]] = []
        if self.clock is None:  # event time only: the future bound is the watermark's
            limit, jump = math.inf, min(F, jump)
        else:
            limit = self.clock() + F if len(batch) else 0.0
        pending: dict[tuple[str, int], int] = {}
        touched: set[int] = set()
        names = {KIND_CALL: "call", KIND_SMS: "sms", KIND_RECHARGE: "recharge", KIND_PROFILE: "profile"}
        pre: dict[int, bool] = {}  # event -> its member's circle held the peer on that day before the batch
        for i in range(len(batch)):
            sub = self._subs.get(batch.msisdn[i])
            peer = int(batch.peer[i])
            if sub is not None and peer:
                e = sub.circle.get(mix64(peer) >> 60)
                d = int(batch.day[i])
                pre[i] = e is not None and e[0] == peer and 0 <= e[2] - d < 64 and bool(e[1] >> (e[2] - d) & 1)
        for i in range(len(batch)):
            m = batch.msisdn[i]
            src = int(batch.src[i])
            off = int(batch.off[i])
            sub = self._subs.get(m)
            hwm = sub.hwm[src] if sub is not None else pending.get((m, src), -1)
            kind = int(batch.kind[i])
            contact = None
            if (
                cfg.shadow_enabled
                and kind in (KIND_CALL, KIND_SMS)
                and batch.comp[i]
                and not batch.hotline[i]
                and int(batch.peer[i]) != 0
                and m.isdigit()
                and len(m) <= 19
            ):
                contact = (
                    _national(int(batch.peer[i]), cfg.country_code),
                    _national(int(m), cfg.country_code),
                    int(batch.day[i]),
                )
                if off > hwm and pre.get(i):
                    contact = None  # the circle held it for that day before this batch: sent already
            if off <= hwm:
                skipped += 1
                if contact:
                    contacts.append(contact)  # replays too: the sketches take minima
                continue
            if sub is not None:
                sub.hwm[src] = off
            else:
                pending[(m, src)] = off
            ts = float(batch.ts[i])
            d = int(batch.day[i])
            if ts > limit or (self._wm is not None and ts > self._wm + jump):
                # without a clock, GAP_CONFIRM such events in a row, within the bound of the first:
                # a gap in the feed (the live worker, judging by the wall clock, takes them)
                g = self._gap
                run = (g[0], g[1] + 1) if g is not None and abs(ts - g[0]) <= jump else (ts, 1)
                if self.clock is not None or run[1] < GAP_CONFIRM:
                    self._gap = run if self.clock is None else None
                    rejects.append(Reject(int(batch.idx[i]), "future", f"ts={batch.ts[i]}"))
                    continue
            self._gap = None
            if kind != KIND_PROFILE and sub is not None and sub.ring and d <= max(sub.ring) - self.R:
                rejects.append(Reject(int(batch.idx[i]), "late", f"ts={batch.ts[i]}"))
                continue
            if contact:
                contacts.append(contact)
            self._wm = ts if self._wm is None else max(self._wm, ts)
            if sub is None:
                sub = self._new_sub(m)
                for s in range(4):
                    sub.hwm[s] = pending.get((m, s), -1)
            kind = int(batch.kind[i])
            self._count("applied_" + names[kind])
            touched.add(sub.row)
            self._extra = touched
            self._apply_one(sub, batch, i, kind, ts, d)
        # subscribers that exist after the batch keep the offsets of their rejected events too
        for (m, s), off in pending.items():
            sub = self._subs.get(m)
            if sub is not None:
                sub.hwm[s] = max(sub.hwm[s], off)
        self._count("skipped", skipped)
        nf = sum(1 for r in rejects if r.reason == "future")
        self._count("rejected_future", nf)
        self._count("rejected_late", len(rejects) - nf)
        rejects.sort(key=lambda r: r.index)
        contacts = sorted(set(contacts))
        cols = (
            np.array([c[0] for c in contacts], dtype=np.uint64),
            np.array([c[1] for c in contacts], dtype=np.uint64),
            np.array([c[2] for c in contacts], dtype=np.int64),
        )
        return Applied(np.array(sorted(touched), dtype=np.int64), rejects, skipped, cols, self._hits)

    def _apply_one(self, sub: _Sub, b: Batch, i: int, kind: int, ts: float, d: int) -> None:
        R = self.R
        sub.first_day = min(sub.first_day, d)
        if kind == KIND_PROFILE:
            if ts >= sub.profile_ts:
                sub.profile_ts = ts
                sub.plan = int(b.plan[i])
                sub.activated = int(b.activated[i])
                sub.arpu_c = int(b.arpu_c[i])
                sub.key_group = int(b.key_group[i])
            return
        # ring bucket of the event's own day (a stale day in the same slot is cleared)
        for dd in [x for x in sub.ring if x % R == d % R and x != d]:
            if dd < d:
                del sub.ring[dd]
        c = sub.ring.setdefault(d, [0] * len(RING))

        def add(name: str, v: int) -> None:
            j = RI[name]
            c[j] = min(c[j] + v, RING[j][1])

        if kind == KIND_RECHARGE:
            cents = int(b.cents[i])
            add("rch_n", 1)
            add("rch_c", cents)
            sub.rch_count += 1
            sub.rch_first = min(sub.rch_first, ts)
            if d > self._fday(sub.rch_last):
                sub.rch_prev = max(sub.rch_prev, sub.rch_last)
                sub.rch_last = ts
            elif d == self._fday(sub.rch_last):
                sub.rch_last = max(sub.rch_last, ts)
            else:
                sub.rch_prev = max(sub.rch_prev, ts)
            sub.rch_sum += cents
            return
        out = bool(b.out[i])
        peer = int(b.peer[i])
        comp = bool(b.comp[i])
        sub.last_active = max(sub.last_active, d)
        if kind == KIND_CALL:
            dur = int(b.dur[i])
            add("calls_out" if out else "calls_in", 1)
            add("sec_out" if out else "sec_in", dur)
            if bool(b.hotline[i]):
                add("hot_n", 1)
                cfg = self.config
                n = sum(sub.ring[x][RI["hot_n"]] for x in range(d - cfg.hotline_days + 1, d + 1) if x in sub.ring)
                if n < cfg.hotline_min_calls:
                    pass
                elif self._judged_through is not None and self.dial_point(ts) > self._judged_through:
                    if sub.dial_day == NODAY:  # the earliest waits for the decisions to reach its point
                        sub.dial_day, sub.dial_ts, sub.dial_n = d, ts, min(n, 65535)
                elif sub.imm_day == NODAY or sub.imm_day < sub.ep_day:
                    sub.imm_day = d
                    self._hits.append((sub.row, d, ts, n))
        else:
            dur = 0
            add("sms_out" if out else "sms_in", 1)
        if comp:
            add("comp_n", 1)
        mixed = mix64(peer)
        c[RI["bits"]] |= 1 << ((mixed >> 52) & 63)
        self._circle(sub, mixed >> 60, peer, d, dur, comp)
        imei = int(b.imei[i])
        if imei:
            self._imei(sub, imei, d)

    def _circle(self, sub: _Sub, b: int, peer: int, d: int, dur: int, comp: bool) -> None:
        e = sub.circle.get(b)
        if e is None or e[0] != peer:
            weak = e is None or _pop(e[1]) <= 1 or e[2] < d - self.R
            if not weak:
                return
            e = sub.circle[b] = [peer, 0, NODAY, 0, 0, False]
        peer_, mask, last, sec, cnt, _ = e
        if last == NODAY:
            mask, newlast = 0, d
        else:
            newlast = max(last, d)
            mask = (mask << (newlast - last)) & 0xFFFFFFFFFFFFFFFF if newlast - last < 64 else 0
        if newlast - d < 64:
            mask |= 1 << (newlast - d)
        e[1], e[2] = mask, newlast
        e[3] = min(sec + dur, 0xFFFFFFFF)
        e[4] = min(cnt + 1, 0xFFFF)
        # the peer's network on its newest contact day: a rival if any event of that day says so
        if d > last:
            e[5] = comp
        elif d == last:
            e[5] = e[5] or comp

    def _imei(self, sub: _Sub, h: int, d: int) -> None:
        slots = sub.imeis
        hit = [s for s in slots if s[0] == h]
        switched = not hit and len(slots) > 0  # a handset new to this number, which used another before
        if hit:
            if d <= hit[0][1]:
                return
            hit[0][1] = d
        elif len(slots) < 2:
            slots.append([h, d])
        else:
            old = min(slots, key=lambda s: (s[1], s[0]))
            if not (d, h) > (old[1], old[0]):
                return
            ent = self._index.get(old[0])
            if ent is not None:
                ent.pop(sub.msisdn, None)
                if not ent:
                    del self._index[old[0]]
            old[0], old[1] = h, d
        ent = self._index.setdefault(h, {})
        m = sub.msisdn
        if m in ent:
            ent[m] = max(ent[m], d)
        elif len(ent) < IMEI_INDEX_SIZE:
            ent[m] = d
        else:
            mm = min(ent, key=lambda x: (ent[x], x))
            if (d, m) > (ent[mm], mm):
                del ent[mm]
                ent[m] = d
            else:
                return
        dual = self.config.dual_sim_days
        if switched:
            for x in [x for x in ent if x != m and ent[x] >= d - dual + 1]:
                self._evidence(self._subs[x], d)
            latest = d >= sub.sw_d
            if self.route_handsets:  # for the engines holding the other numbers
                self._hs_ops.append(Switch(h, m, d, SWITCHED | (LATEST if latest else 0), sub.sw_h if latest else 0))
            if latest:  # the index holds each number's latest switch only (as a restore rebuilds it)
                sw = self._switches.get(sub.sw_h)
                if sub.sw_h != h and sw is not None:
                    sw.pop(m, None)
                    if not sw:
                        del self._switches[sub.sw_h]
                sub.sw_h, sub.sw_d = h, d
                self._switch(m, h, d)
        for x, dx in list(self._switches.get(h, {}).items()):
            if x != m and d >= dx - dual + 1:
                self._evidence(sub, dx)

    route_handsets = False  # a worker's engine: record the switches for the other engines

    def take_handset_ops(self) -> list:
        ops, self._hs_ops = self._hs_ops, []
        return ops

    def apply_switches(self, switches) -> np.ndarray:
        """Other engines' switches: evidence for our numbers that used the handset within the
        window, and the switch kept for their later uses; the rows changed."""
        rows = set()
        dual = self.config.dual_sim_days
        for h, m, d, flags, old in switches:
            if m in self._subs:
                continue
            ent = self._index.get(h, {})
            for x in [x for x in ent if x != m and ent[x] >= d - dual + 1]:
                sub = self._subs[x]
                before = (sub.dual_day, sub.dual_prev, sub.dual_n)
                self._evidence(sub, int(d))
                if (sub.dual_day, sub.dual_prev, sub.dual_n) != before:
                    rows.add(sub.row)
            if flags & LATEST:
                sw = self._switches.get(old)
                if old and old != h and sw is not None:
                    sw.pop(m, None)
                    if not sw:
                        del self._switches[old]
                self._switch(m, h, d)
        self._extra.clear()
        return np.array(sorted(rows), dtype=np.int64)

    def _evidence(self, s: _Sub, d: int) -> None:
        if d > s.dual_day:
            s.dual_prev, s.dual_day = s.dual_day, d
        elif d < s.dual_day:
            s.dual_prev = max(s.dual_prev, d)
        s.dual_n = max(s.dual_n, 1)
        self._extra.add(s.row)

    def _switch(self, m: str, h: int, d: int) -> None:
        sw = self._switches.setdefault(h, {})
        if m in sw or len(sw) < IMEI_INDEX_SIZE:
            sw[m] = max(sw.get(m, NODAY), d)
            return
        mm = min(sw, key=lambda x: (sw[x], x))
        if (d, m) > (sw[mm], mm):
            del sw[mm]
            sw[m] = d

    # ---------------------------------------------------------------- signals
    def _active_before(self, sub: _Sub, D: int) -> int:
        la = sub.last_active
        if la < D:
            return la
        days = [
            d
            for d, c in sub.ring.items()
            if d < D and c[RI["calls_out"]] + c[RI["calls_in"]] + c[RI["sms_out"]] + c[RI["sms_in"]] > 0
        ]
        if days:
            return max(days)
        return NODAY if sub.first_day >= D else D - self.R - 1

    def _dual_before(self, sub: _Sub, D: int) -> int:
        return sub.dual_day if sub.dual_day < D else (sub.dual_prev if sub.dual_prev < D else NODAY)

    def _silent(self, sub: _Sub, D: int) -> int:
        la = self._active_before(sub, D)
        if la == NODAY:
            return 0
        s = max(D - 1 - la, 0)
        skip = set(self.config.holiday_days) | set(self._void(D))
        hol = sum(1 for x in skip if la < x <= D - 1 and x > D - 4000)
        return max(s - hol, 0)

    def void_days(self, D: int) -> list[int]:
        return list(self._void(D))

    def _void(self, D: int) -> list[int]:
        return self._voids(D)[0]

    def _voids(self, D: int) -> tuple[list[int], list[int]]:
        """Feed outages: the days of the decision window whose calls, or SMS, over every subscriber
        fall below void_fraction of the median of the 7 days before them normal for that kind (those
        reaching void_min_events); and those whose recharges fell so (void_min_recharges): recharges
        lost. Fixed for a day from its candidates on."""
        if D in self._void_memo:
            return self._void_memo[D]
        cfg = self.config
        out: list[int] = []
        lost: list[int] = []
        if cfg.void_fraction <= 0:
            return out, lost
        normal: dict[str, list[int]] = {"calls": [], "sms": [], "rch": []}
        mins = {"calls": cfg.void_min_events, "sms": cfg.void_min_events, "rch": cfg.void_min_recharges}
        for d in range(D - cfg.baseline_days - cfg.recent_days, D):
            tot = dict.fromkeys(normal, 0)
            for sub in self._subs.values():
                c = sub.ring.get(d)
                if c is not None:
                    tot["calls"] += c[RI["calls_out"]] + c[RI["calls_in"]]
                    tot["sms"] += c[RI["sms_out"]] + c[RI["sms_in"]]
                    tot["rch"] += c[RI["rch_n"]]
            low = {}
            for k, seen in normal.items():  # each feed can fail alone
                last = sorted(seen[-7:])
                ref = last[len(last) // 2] if last else 0
                low[k] = ref >= mins[k] and tot[k] < cfg.void_fraction * ref
                if not low[k]:
                    seen.append(tot[k])
            if low["calls"] or low["sms"]:
                out.append(d)
            if low["rch"]:
                lost.append(d)
        return out, lost

    def _lapse(self, sub: _Sub, D: int):
        """(overdue ratio, tripped, usual interval s): the own mean gap from recharge_min_count
        recharges on, else the prior cadence (the amount's worth of the monthly ARPU, or
        recharge_prior_days)."""
        cfg = self.config
        ds = cfg.day_start_s(D)
        n = sub.rch_count - sum(c[RI["rch_n"]] for d, c in sub.ring.items() if d >= D)
        cents = sub.rch_sum - sum(c[RI["rch_c"]] for d, c in sub.ring.items() if d >= D)
        last = sub.rch_last if sub.rch_last < ds else (sub.rch_prev if sub.rch_prev < ds else -math.inf)
        if sub.plan != 1:
            return 0.0, False, 0.0
        prior = cfg.recharge_prior_days * 86400.0
        if cfg.recharge_prior_from_amount and sub.arpu_c > 0 and n >= 1 and cents > 0:
            days = 30.0 * (cents / n) / float(sub.arpu_c)
            prior = min(max(days, cfg.recharge_prior_min_days), cfg.recharge_prior_max_days) * 86400.0
        on = cfg.recharge_prior_days > 0
        if n >= cfg.recharge_min_count and last > -math.inf:
            interval = (last - sub.rch_first) / max(n - 1, 1)
            if on and cfg.recharge_prior_weight > 0:
                g, k = float(max(n - 1, 1)), cfg.recharge_prior_weight
                interval = (g * interval + k * prior) / (g + k)
            ref = last
        elif on and n >= 1 and last > -math.inf:
            interval, ref = prior, last
        elif on and cfg.recharge_prior_unseen and n == 0 and sub.first_day < D:
            interval, ref = prior, cfg.day_start_s(0) + sub.first_day * 86400.0
        else:
            return 0.0, False, 0.0
        if not interval > 0:
            return 0.0, False, 0.0
        if n == 0:  # no recharge since first seen (recharge_prior_unseen)
            fac, over = cfg.recharge_prior_unseen_factor, 0.0
        elif ref != last or n < cfg.recharge_min_count:  # a prior cadence: its own tolerance
            fac, over = cfg.recharge_prior_factor, cfg.recharge_prior_overdue_days
        elif n <= 2:  # one gap is a rough estimate of the interval: twice the tolerance
            fac, over = 1.0 + 2.0 * (cfg.recharge_lapse_factor - 1.0), 2.0 * cfg.recharge_min_overdue_days
        else:
            fac, over = cfg.recharge_lapse_factor, cfg.recharge_min_overdue_days
        void = self._voids(D)[1]
        if void:  # a recharge expected within the margin of the latest outage of the recharges: lost there?
            vf = void[-1]
            while vf - 1 in void:
                vf -= 1
            vs = cfg.day_start_s(vf)
            sf = vs - ref
            exp, margin = ref + interval, over * 86400.0
            due = ref < vs and vs - margin <= exp <= cfg.day_start_s(void[-1] + 1) + margin
            if due and not (sf / interval >= fac and sf - interval >= over * 86400.0):
                ref = cfg.day_start_s(void[-1] + 1)
        since = ds - ref
        ratio = since / interval
        trip = ratio >= fac and since - interval >= over * 86400.0
        return ratio, trip, interval

    def _features(self, sub: _Sub, D: int) -> dict:
        cfg = self.config
        nb, nr = cfg.baseline_days, cfg.recent_days
        hol = cfg.holiday_days | set(self._void(D))  # holidays and feed outages, left out alike
        days = list(range(D - nb - nr, D))
        base, rec = days[:nb], days[nb:]
        nrd = sum(1 for d in rec if d not in hol)

        def get(d, name):
            c = sub.ring.get(d)
            return 0 if c is None else c[RI[name]]

        def metrics(d):
            calls = get(d, "calls_out") + get(d, "calls_in")
            sms = get(d, "sms_out") + get(d, "sms_in")
            return (get(d, "sec_out") + get(d, "sec_in"), calls, sms, _pop(get(d, "bits"))), (calls + sms) > 0

        mt = {d: metrics(d) for d in days}
        bA = sum(1 for d in base if d not in hol and mt[d][1])
        rA = sum(1 for d in rec if d not in hol and mt[d][1])
        ring_active = sum(1 for d in days if mt[d][1])
        recent_active = sum(1 for d in rec if mt[d][1])
        tot, cnt = _traffic_drop(mt, hol, base, rec)
        f: dict = {}
        elig = (
            bA >= cfg.drop_min_baseline_active_days and rA >= cfg.drop_min_recent_active_days and nrd >= 3 and cnt > 0
        )
        f["drop"] = tot / max(cnt, 1) if elig else 0.0
        f["drop_elig"] = elig
        old_b, prior = base[: nb - nr], base[nb - nr :]

        def rel_drop(span):
            tot2, cnt2 = _traffic_drop(mt, hol, old_b, span)
            return tot2 / max(cnt2, 1) if cnt2 > 0 else 0.0

        f["drop_prior"] = rel_drop(prior)
        f["trend"] = rel_drop(prior + rec) if elig else 0.0
        f["trend_recent"] = rel_drop(rec) if elig else 0.0
        f["drop_tail"] = rel_drop(rec[nr - cfg.drop_tail_days :]) if elig else 0.0

        def shortfall_z(b, span):
            nb_, ns_ = sum(1 for d in b if d not in hol), sum(1 for d in span if d not in hol)
            e = sum(mt[d][0][1] + mt[d][0][2] for d in b if d not in hol) / max(nb_, 1) * ns_
            return (e - sum(mt[d][0][1] + mt[d][0][2] for d in span if d not in hol)) / math.sqrt(max(e, 1.0))

        f["drop_z"] = shortfall_z(base, rec)
        f["trend_z"] = shortfall_z(old_b, prior + rec)
        f["hotline"] = sum(get(d, "hot_n") for d in range(D - cfg.hotline_days, D))
        # contact circle
        mem_n = wsum = ero = rsum = bsum = rcomp = bcomp = rnew = size = 0
        for e in sub.circle.values():
            peer, mask, last, sec, c, comp = e
            bd = sum(1 for d in base if 0 <= last - d < 64 and mask >> (last - d) & 1)
            rd = sum(1 for d in rec if 0 <= last - d < 64 and mask >> (last - d) & 1)
            if bd >= cfg.circle_min_days:
                mem_n += 1
                wsum += bd
                if rd == 0:
                    ero += bd
            rsum += rd
            bsum += bd
            if comp:
                rcomp += rd
                bcomp += bd
            if bd == 0:
                rnew += rd
            if bd + rd >= cfg.circle_min_days:
                size += 1
        ero_elig = mem_n >= cfg.circle_min_members and recent_active >= cfg.drop_min_recent_active_days
        f["erosion"] = ero / max(wsum, 1) if ero_elig else 0.0
        f["erosion_elig"] = ero_elig
        f["drift"] = 0.0
        if cfg.drift_threshold > 0:
            rdd = odd = 0
            for e in sub.circle.values():
                _, mask, last, _, c, _ = e
                if c <= 0:
                    continue
                rdd += sum(1 for d in range(D - 14, D) if 0 <= last - d < 64 and mask >> (last - d) & 1)
                old = cfg.drift_old_days
                odd += sum(1 for d in range(D - old, D - old + 28) if 0 <= last - d < 64 and mask >> (last - d) & 1)
            if (
                sub.first_day <= D - cfg.drift_old_days
                and odd >= cfg.drift_min_weight
                and recent_active >= cfg.drop_min_recent_active_days
            ):
                f["drift"] = 1.0 - (rdd / 14) / max(odd / 28, 1e-9)
        rshare = rcomp / max(rsum, 1) if rsum > 0 else 0.0
        bshare = bcomp / max(bsum, 1) if bsum > 0 else 0.0
        mw = cfg.competitor_min_weight
        f["comp_rise"] = rshare - bshare if (ero_elig and rsum >= mw and bsum >= mw) else 0.0
        f["new_share"] = rnew / max(rsum, 1) if rsum > 0 else 0.0
        f["circle_size"] = size
        f["silence"] = self._silent(sub, D)
        f["silence_elig"] = self._active_before(sub, D) != NODAY and ring_active >= cfg.silence_min_active_days
        f["recent_active"] = recent_active
        f["lapse"], f["lapse_trip"], f["rch_interval_s"] = self._lapse(sub, D)
        dd = self._dual_before(sub, D)
        f["dual"] = sub.dual_n if (dd != NODAY and dd >= D - cfg.dual_sim_days + 1) else 0
        f.update(self._shadow_features(sub, D))
        f["in_season"] = any(d in cfg.holiday_days for d in range(D - 2 * nr, D + 1))
        return f

    def _shadow_features(self, sub: _Sub, D: int) -> dict:
        cfg = self.config
        out = {"shadow": False, "shadow_j": sub.sh_j / 1000.0, "shadow_decline": 0.0, "shadow_peer": sub.sh_peer}
        if not cfg.shadow_enabled or sub.sh_peer == 0 or sub.sh_day == NODAY or sub.sh_day < D - cfg.dual_sim_days + 1:
            return out
        lo_b, hi_b = max(sub.sh_first - cfg.baseline_days, sub.first_day), sub.sh_first - 1
        lo_r, hi_r = max(sub.sh_first, D - 2 * cfg.recent_days), D - 1
        bc = rc = 0
        for b, e in sub.circle.items():
            if sub.sh_mask >> b & 1:
                bc += _days_in(e[1], e[2], lo_b, hi_b)
                rc += _days_in(e[1], e[2], lo_r, hi_r)
        Lb, Lr = hi_b - lo_b + 1, hi_r - lo_r + 1
        if Lr < 3 or Lb < 7 or bc == 0:
            return out
        decline = min(max(1.0 - (rc / Lr) / (bc / Lb), 0.0), 1.0)
        out["shadow_decline"] = decline
        out["shadow"] = decline >= cfg.shadow_min_decline
        return out

    def _strong(self, sub: _Sub, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """(bucket, national peer, contact days in [lo, hi]) of the circle's strong own-network members."""
        cfg = self.config
        out = []
        for b in sorted(sub.circle):
            peer, mask, last, _, cnt, comp = sub.circle[b]
            w = _days_in(mask, last, lo, hi)
            if cnt > 0 and not comp and peer != 0 and w >= cfg.circle_min_days:
                out.append((b, _national(peer, cfg.country_code), w))
        return out

    def _publish(self, sub: _Sub, f: dict, D: int) -> None:
        cfg = self.config
        nb, nr = cfg.baseline_days, cfg.recent_days
        if max(f["drop"], f["erosion"]) < cfg.shadow_publish_drop or sub.sh_pub >= D:
            return
        strong = self._strong(sub, D - nb - nr, D - nr - 1)
        h = 0
        for _, p, _ in strong:
            h ^= int(_sh.mix(np.array([p], dtype=np.uint64))[0])
        if len(strong) < cfg.circle_min_members:
            return
        if not (D - sub.sh_pub >= cfg.shadow_refresh_days or h != sub.sh_hash):
            return
        sig = _sh.signature(p for _, p, _ in strong)
        self.shadow_publications.append({"s": sub.msisdn, "bands": _sh.band_keys(sig), "day": int(D)})
        sub.sh_pub, sub.sh_hash = D, h

    def take_shadow_publications(self) -> list[dict]:
        out, self.shadow_publications = self.shadow_publications, []
        return out

    def apply_shadow(self, evidence) -> np.ndarray:
        cfg = self.config
        changed = set()
        for ev in evidence:
            sub = self._subs.get(str(ev["s"]))
            if sub is None:
                continue
            x, first, D = int(ev["x"]), int(ev["first"]), int(ev["day"])
            if first < sub.first_day + cfg.shadow_warmup_days or first < D - cfg.shadow_new_days:
                continue
            strong = self._strong(sub, first - cfg.baseline_days, first - 1)
            if len(strong) < cfg.shadow_min_overlap:
                continue
            sig = [int(v) for v in ev["sig"]]
            me = _national(int(sub.msisdn), cfg.country_code)
            if x == me or any(
                a == b
                for a, b in zip(_sh.member_hashes(np.array([me], dtype=np.uint64))[0].tolist(), sig, strict=False)
            ):
                continue
            hs = {p: _sh.member_hashes(np.array([p], dtype=np.uint64))[0].tolist() for _, p, _ in strong}
            matched = [(b, w) for b, p, w in strong if any(hs[p][i] == sig[i] for i in range(_sh.M))]
            mins = [min(hs[p][i] for _, p, _ in strong) for i in range(_sh.M)]
            both = [i for i in range(_sh.M) if mins[i] != 0xFFFFFFFF or sig[i] != 0xFFFFFFFF]
            J = sum(1 for i in both if mins[i] == sig[i]) / len(both) if both else 0.0
            contain = sum(1 for i in range(_sh.M) if any(hs[p][i] == sig[i] for _, p, _ in strong)) / _sh.M
            share = sum(w for _, w in matched) / sum(w for _, _, w in strong)
            if (
                J < cfg.shadow_min_jaccard
                or contain < cfg.shadow_min_containment
                or len(matched) < cfg.shadow_min_overlap
                or share < cfg.shadow_min_weight_share
            ):
                continue
            jm = int(round(J * 1000))
            live = sub.sh_peer != 0 and sub.sh_day >= D - cfg.dual_sim_days + 1
            if not (sub.sh_peer == x or not live or jm > sub.sh_j):
                continue
            new = (x, first, max(D, sub.sh_day) if sub.sh_peer == x else D, sum(1 << b for b, _ in matched), jm)
            if new != (sub.sh_peer, sub.sh_first, sub.sh_day, sub.sh_mask, sub.sh_j):
                sub.sh_peer, sub.sh_first, sub.sh_day, sub.sh_mask, sub.sh_j = new
                changed.add(sub.row)
        return np.array(sorted(changed), dtype=np.int64)

    def _decide(self, sub: _Sub, f: dict, D: int) -> dict:
        cfg = self.config
        tail = f["drop_tail"] >= cfg.drop_tail_threshold
        off = cfg.drop_min_z <= 0
        t_drop7 = (
            f["drop_elig"]
            and f["drop"] >= cfg.drop_threshold
            and f["drop_prior"] >= cfg.drop_confirm_threshold
            and tail
            and (off or f["drop_z"] >= cfg.drop_min_z)
        )
        t_trend = (
            f["drop_elig"]
            and f["trend"] >= cfg.trend_threshold
            and f["drop_prior"] >= cfg.trend_week_threshold
            and f["trend_recent"] >= cfg.trend_week_threshold
            and tail
            and (off or f["trend_z"] >= cfg.drop_min_z)
        )
        t_drop = t_drop7 or t_trend
        drop_v = max(f["drop"], f["trend"]) if t_trend else f["drop"]
        t_hot = f["hotline"] >= cfg.hotline_min_calls
        t_dual = f["dual"] >= 1 or f["shadow"]
        t_ero35 = f["erosion_elig"] and f["erosion"] >= cfg.erosion_threshold
        t_drift = cfg.drift_threshold > 0 and f["drift"] >= cfg.drift_threshold
        t_ero = t_ero35 or t_drift
        ero_v = max(f["erosion"] if t_ero35 else 0.0, f["drift"] if t_drift else 0.0) if t_ero else f["erosion"]
        t_comp = f["comp_rise"] >= cfg.competitor_rise_threshold
        t_lapse = f["lapse_trip"] or (
            cfg.lapse_decline_factor > 0  # overdue, and the traffic going down with it
            and f["rch_interval_s"] > 0
            and f["lapse"] >= cfg.lapse_decline_factor
            and f["drop"] >= cfg.lapse_decline_drop
            and f["drop_tail"] >= cfg.lapse_decline_tail
        )
        t_sil = f["silence_elig"] and f["silence"] >= cfg.silence_days
        span = cfg.churned_silence_days - cfg.silence_days
        c_sil = cfg.w_silence + 0.5 * min(1.0, (f["silence"] - cfg.silence_days) / span)
        contribs = (
            max(cfg.w_drop * drop_v if t_drop else 0.0, cfg.w_erosion * ero_v if t_ero else 0.0),
            cfg.w_hotline if t_hot else 0.0,
            cfg.w_dual_sim if t_dual else 0.0,
            cfg.w_competitor_contacts if t_comp else 0.0,
            cfg.w_recharge_lapse if t_lapse else 0.0,
            min(c_sil, 1.0) if t_sil else 0.0,
        )
        keep = 1.0
        for c in contribs:
            keep = keep * (1.0 - c)
        score = 1.0 - keep
        compet = t_hot or t_dual or t_comp
        deep = (
            t_drop7
            and f["drop"] >= cfg.deep_drop_threshold
            and f["drop_prior"] >= cfg.drop_threshold
            and f["trend"] >= cfg.deep_trend_threshold
        )
        alarm_level = t_hot or (t_dual and cfg.dual_sim_alarm_level) or deep
        raw = 1 if score >= cfg.warn_score else 0
        if score >= cfg.alarm_score or alarm_level:
            raw = 2
        if t_sil and f["silence"] >= cfg.churned_silence_days:
            raw = 3
        quiet = t_drop or t_ero or t_sil or t_lapse
        seasonal = (
            (not compet)
            and quiet
            and (
                f["in_season"]
                or (f["new_share"] >= cfg.seasonal_new_share and f["recent_active"] >= 3 and (t_drop or t_ero))
            )
        )
        if seasonal:
            raw = min(raw, 1)
        if compet:
            reason = 0
        elif seasonal:
            reason = 1
        elif t_lapse and sub.plan == 1:
            reason = 3
        elif quiet:
            reason = 2
        else:
            reason = 4
        arpu = max(sub.arpu_c, 0)
        kg = sub.key_group == 1
        cs = f["circle_size"]
        loyal = sub.activated >= 0 and D - sub.activated >= cfg.loyal_tenure_days
        hi_c, mid_c = round(cfg.tier_high_arpu * 100), round(cfg.tier_mid_arpu * 100)
        if kg or arpu >= hi_c or (arpu >= mid_c and cs >= cfg.influence_high):
            tier = 0
        elif arpu >= mid_c or cs >= cfg.influence_mid or loyal:
            tier = 1
        else:
            tier = 2
        return {
            "score": score,
            "raw": raw,
            "reason": reason,
            "tier": tier,
            "drop_v": drop_v,
            "ero_v": ero_v,
            "trips": (t_drop, t_hot, t_dual, t_ero, t_comp, t_lapse, t_sil),
        }

    def _signals(self, f: dict, dec: dict, only_tripped: bool) -> list[dict]:
        cfg = self.config
        vals = (
            (float(dec["drop_v"]), cfg.drop_threshold),
            (int(f["hotline"]), cfg.hotline_min_calls),
            (int(f["dual"]) + int(f["shadow"]), 1),
            (float(dec["ero_v"]), cfg.erosion_threshold),
            (float(f["comp_rise"]), cfg.competitor_rise_threshold),
            (float(f["lapse"]), cfg.recharge_lapse_factor if f["lapse_trip"] else cfg.lapse_decline_threshold()),
            (int(f["silence"]), cfg.silence_days),
        )
        out = []
        for name, (v, thr), t in zip(SIGNAL_ORDER, vals, dec["trips"], strict=False):
            if only_tripped and not t:
                continue
            s = {"name": name, "value": round(v, 4) if isinstance(v, float) else v, "threshold": thr}
            if name == "dual_sim" and f["shadow"]:
                s["detail"] = _sh.shadow_detail(int(f["shadow_peer"]), float(f["shadow_j"]))
            if not only_tripped:
                s["tripped"] = bool(t)
            out.append(s)
        return out

    def _eval_sub(self, sub: _Sub, D: int, now_s: float, out: list) -> None:
        cfg = self.config
        if sub.imm_day != NODAY and sub.imm_day < D and sub.imm_day >= sub.ep_day and sub.phase < 2:
            sub.phase, sub.last_emit_day, sub.last_emit_sev, sub.emitted = 2, sub.imm_day, 2, 1
        f = self._features(sub, D)
        if cfg.shadow_enabled:
            self._publish(sub, f, D)
        dec = self._decide(sub, f, D)
        raw, cur = dec["raw"], sub.phase
        if raw > cur:
            cool = sub.last_emit_day != NODAY and D - sub.last_emit_day < cfg.cooldown_days and raw <= sub.last_emit_sev
            sub.phase = raw
            sub.clear_day = NODAY
            if not cool:
                out.append(self._record(sub, PHASE_NAMES[raw], f, dec, D, now_s, cur))
                sub.last_emit_day, sub.last_emit_sev, sub.emitted = D, raw, 1
        elif raw == 0 and cur > 0:
            if sub.clear_day == NODAY:
                sub.clear_day = D
            if D - sub.clear_day + 1 >= cfg.recover_clear_days and f["recent_active"] >= cfg.recover_min_active_days:
                if sub.emitted:
                    out.append(self._record(sub, "recovered", f, dec, D, now_s, cur))
                sub.phase = 0
                sub.episode += 1
                sub.emitted = 0
                sub.clear_day = NODAY
                sub.ep_day = D
        else:
            sub.clear_day = NODAY

    def _record(self, sub: _Sub, phase: str, f, dec, D, now_s, prev) -> dict:
        return {
            "alarm_id": alarm_id(sub.msisdn, phase, int(D), sub.episode),
            "msisdn": sub.msisdn,
            "phase": phase,
            "score": round(float(dec["score"]), 4),
            "signals": self._signals(f, dec, True),
            "reason": REASONS[dec["reason"]],
            "value_tier": TIERS[dec["tier"]],
            "event_time": float(now_s),
            "emitted_at": self._emitted_at,
            "schema_version": SCHEMA_VERSION,
            "previous_phase": PHASE_NAMES[prev],
            "episode": sub.episode,
        }

    def _run(self, subs: Iterable[_Sub], D: int, now_s: float) -> list[dict]:
        subs = list(subs)
        out: list[dict] = []
        self._emitted_at = None
        for sub in subs:
            self._eval_sub(sub, D, now_s, out)
        if out:
            t = self._now()
            for r in out:
                r["emitted_at"] = t
        out.sort(key=lambda x: x["msisdn"])
        return out

    def evaluate(self, touched, now_s: float | None = None) -> list[dict]:
        if self._wm is None or len(touched) == 0:
            return []
        now = self._wm if now_s is None else min(float(now_s), self._wm)
        D = self.day_of(now)
        return self._run([self._by_row[int(r)] for r in touched], D, now)

    def sweep(self, now_s: float) -> list[dict]:
        return self.decide(self.day_of(now_s)).alarms

    def decide(self, D: int) -> Decision:
        return self.decide_rows(D, self.decide_candidates(D))

    def decide_candidates(self, D: int) -> np.ndarray:
        cfg = self.config
        lo = D - cfg.dual_sim_days + 1  # switches before it can no longer give live evidence: forgotten
        for h in list(self._switches):
            sw = {m: d for m, d in self._switches[h].items() if d >= lo}
            if sw:
                self._switches[h] = sw
            else:
                del self._switches[h]
        self._void_memo = {k: v for k, v in self._void_memo.items() if k >= D - 2}
        self._void_memo.pop(D, None)
        self._void_memo[D] = self._voids(D)
        cands = []
        for sub in self._subs.values():
            c = D - 1 in sub.ring or sub.phase > 0
            if not c and self._active_before(sub, D) != NODAY and self._silent(sub, D) >= cfg.silence_days:
                c = True
            if not c and self._lapse(sub, D)[1]:
                c = True
            lo = D - cfg.dual_sim_days + 1
            c = c or self._dual_before(sub, D) >= lo or (cfg.shadow_enabled and sub.sh_peer != 0 and sub.sh_day >= lo)
            c = c or (sub.imm_day != NODAY and sub.imm_day < D and sub.imm_day >= sub.ep_day and sub.phase < 2)
            # not decided for D already (by the worker that owned it before), and seen before D
            if c and sub.dec_day < D and sub.first_day < D:
                cands.append(sub)
        return np.array(sorted(sub.row for sub in cands), dtype=np.int64)

    def decide_rows(self, D: int, rows: np.ndarray) -> Decision:
        cands = [self._by_row[int(r)] for r in rows if int(r) in self._by_row]
        alarms = []
        for i in range(0, len(cands), EVAL_CHUNK):
            alarms.extend(self._run(cands[i : i + EVAL_CHUNK], D, self.config.day_start_s(D)))
        for sub in cands:
            sub.dec_day = D  # so every subscriber decided changed (its decided day, persisted with it)
        alarms.sort(key=lambda x: x["msisdn"])
        changed = [sub.row for sub in cands]
        return Decision(alarms, np.array(changed, dtype=np.int64))

    def dial_point(self, ts: float) -> int:
        return self.day_of(ts - self.config.decision_grace_s)

    def judge_dials(self, through: int) -> tuple[list, np.ndarray]:
        ready = sorted(
            (s.dial_ts, s.row, s)
            for s in self._subs.values()
            if s.dial_day != NODAY and self.dial_point(s.dial_ts) <= through
        )
        hits = []
        for ts, r, sub in ready:
            d, n = sub.dial_day, sub.dial_n
            sub.dial_day, sub.dial_ts, sub.dial_n = NODAY, -math.inf, 0
            if sub.imm_day == NODAY or sub.imm_day < sub.ep_day:
                sub.imm_day = d
                hits.append((r, d, ts, n))
        return hits, np.array(sorted(r for _, r, _ in ready), dtype=np.int64)

    def immediate(self, hits: list) -> list[dict]:
        cfg = self.config
        out = []
        for r, d, ts, n in hits:
            sub = self._by_row.get(int(r))
            if sub is None:
                continue
            f = self._features(sub, d)
            f["hotline"] = n
            dec = self._decide(sub, f, d)
            self._emitted_at = self._now()
            rec = self._record(sub, "alarm", f, dec, d, ts, sub.phase)
            rec["signals"] = [{"name": "competitor_hotline", "value": int(n), "threshold": cfg.hotline_min_calls}]
            out.append(rec)
        return out

    # ---------------------------------------------------------------- views
    def view(self, msisdn: str) -> dict | None:
        sub = self._subs.get(msisdn)
        if sub is None:
            return None
        D = self.day_of(self._wm) if self._wm is not None else 0
        f = self._features(sub, D)
        dec = self._decide(sub, f, D)
        from .core import DAY_FIELDS, day_dict

        days = []
        for d in range(D - 13, D + 1):
            c = sub.ring.get(d, [0] * len(RING))
            days.append(day_dict(self.config.date_of_day(d), dict(zip(DAY_FIELDS, c, strict=False))))
        return {
            "msisdn": msisdn,
            "phase": PHASE_NAMES[sub.phase],
            "episode": sub.episode,
            "score": round(float(dec["score"]), 4),
            "signals": self._signals(f, dec, False),
            "value_tier": TIERS[dec["tier"]],
            "reason_guess": REASONS[dec["reason"]],
            "as_of_day": self.config.date_of_day(D),
            "days": days,
        }

    def state_of(self, msisdn: str) -> dict | None:
        s = self._subs.get(msisdn)
        if s is None:
            return None
        return {
            "ring": {d: tuple(c) for d, c in s.ring.items()},
            "circle": {b: (e[0], e[1], e[2], e[3], e[4], int(e[5])) for b, e in s.circle.items()},
            "imeis": sorted((h, d) for h, d in s.imeis),
            "hwm": list(s.hwm),
            "first_day": s.first_day,
            "last_active": s.last_active,
            "rch": (s.rch_count, float(s.rch_first), float(s.rch_last), s.rch_sum),
            "profile": (s.plan, s.activated, s.arpu_c, s.key_group, float(s.profile_ts)),
            "dual": (s.dual_day, s.dual_n),
            "life": (s.phase, s.episode, s.last_emit_day, s.last_emit_sev, s.emitted, s.clear_day),
            "shadow": (s.sh_peer, s.sh_first, s.sh_day, s.sh_mask, s.sh_j, s.sh_pub, s.sh_hash),
            "decisions": (float(s.rch_prev), s.imm_day, s.ep_day, s.dual_prev, s.sw_h, s.sw_d, s.dec_day),
            "dial": (s.dial_day, float(s.dial_ts), s.dial_n),
        }

    def forget(self, msisdns: Iterable[str]) -> None:
        for m in msisdns:
            s = self._subs.pop(m, None)
            if s is None:
                continue
            self._void_memo.clear()  # the day totals change
            del self._by_row[s.row]
            for h, _ in s.imeis:
                ent = self._index.get(h)
                if ent is not None:
                    ent.pop(m, None)
                    if not ent:
                        del self._index[h]
            sw = self._switches.get(s.sw_h)
            if sw is not None:
                sw.pop(m, None)
                if not sw:
                    del self._switches[s.sw_h]

    def snapshot(self, msisdn: str) -> bytes | None:
        import pickle

        s = self._subs.get(msisdn)
        if s is None:
            return None
        return b"\x01" + pickle.dumps({k: getattr(s, k) for k in _Sub.__slots__ if k not in ("msisdn", "row")})

    def restore(self, msisdn: str, data: bytes) -> None:
        import pickle

        if data[:1] != b"\x01":
            raise ValueError("unsupported snapshot version")
        st = pickle.loads(data[1:])
        self._void_memo.clear()
        if msisdn in self._subs:
            self.forget([msisdn])
        s = self._new_sub(msisdn)
        for k, v in st.items():
            setattr(s, k, v)
        for h, d in s.imeis:
            ent = self._index.setdefault(h, {})
            if msisdn in ent or len(ent) < IMEI_INDEX_SIZE:
                ent[msisdn] = max(ent.get(msisdn, NODAY), d)
        if s.sw_h:
            self._switch(msisdn, s.sw_h, s.sw_d)
