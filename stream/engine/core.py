"""The vectorised churn engine: columnar per-subscriber state in numpy arrays, one row per subscriber.

State per subscriber (fixed size, see :data:`FIELDS`; ~2.0 KB with the default 38-day ring):

* a ring of ``ring_days`` daily buckets (slot = day % ring_days, with the day stamped in ``stamp``):
  calls/seconds/SMS out and in, calls+SMS with competitor peers, competitor-hotline dials, recharges
  (count, cents) and a 64-bit bitmap of the day's peers (popcount = distinct contacts, a lower bound);
* the contact circle: ``K=16`` hash-addressed buckets (bucket = top 4 bits of ``mix64(peer)``), each
  owned by one peer with a bitmask of contact days (bit j = ``last - j``), seconds, count and a
  competitor flag. A foreign peer takes a bucket only when the owner is weak (<= 1 contact day, or
  not contacted for ``ring_days``); otherwise it is not tracked. Frequency (contact days) first, then
  seconds and count rank the circle;
* handset: the two most recent IMEIs (by day, then IMEI) and dual-SIM evidence (day, other numbers);
* recharges (count, first/last time, total cents), profile (plan, activation day, ARPU, key group);
* per input source the highest offset applied (idempotent replays), and the lifecycle.

The engine-wide IMEI index (stream/engine/handsets.py: IMEI -> up to 4 numbers with their last day,
and their switches) lives in the instance. In the service a worker only holds the numbers of its own
partitions: with ``route_handsets`` the engine also records the switches it indexes, which the
service broadcasts to every worker (stream/service/handsets.py), whose engines meet them with their
own numbers (``apply_switches``).
"""

from __future__ import annotations

import functools
import logging
import math
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from stream.contract import KIND_CALL, KIND_PROFILE, KIND_RECHARGE, KIND_SMS, SCHEMA_VERSION, alarm_id
from stream.contract import PHASES as PHASE_NAMES
from stream.contract import SIGNALS as SIGNAL_ORDER

from . import shadow as _sh
from . import sparse as _sparse
from .config import EngineConfig
from .decode import Batch, Reject, decode
from .handsets import IMEI_INDEX_SIZE, LATEST, SWITCHED, HandsetIndex, Switch
from .rowindex import KEY_VALUE_MASK, RowIndex, keys_of

__all__ = ["Engine", "Applied", "Decision", "K", "IMEI_INDEX_SIZE", "PHASE_NAMES", "SNAPSHOT_VERSION"]

logger = logging.getLogger(__name__)

K = 16  # contact-circle buckets per subscriber
NSRC = 4
I32MIN = np.iinfo(np.int32).min
NODAY = -(2**31)  # "never" for day fields
SNAPSHOT_VERSION = 7  # 2: clear_day (recovery hysteresis); 3: shadow (second SIM) evidence; 4: decisions in event time;
# 5: the last day decided per subscriber; 6: version 5's fields in the sparse encoding (stream.engine.sparse);
# 7: a care-line dial waiting for the decisions to reach its point (sparse, as 6)
_SNAP_BLOCK = 1024  # rows per block of Engine.snapshot_many
_RESTORE_BLOCK = 4096  # snapshots per block of Engine.restore_many
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_U64_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)

# name, per-row shape ("R" = ring_days), dtype, initial value
FIELDS: tuple[tuple[str, tuple, str, float], ...] = (
    ("stamp", ("R",), "i4", NODAY),
    ("calls_out", ("R",), "u2", 0),
    ("calls_in", ("R",), "u2", 0),
    ("sec_out", ("R",), "u4", 0),
    ("sec_in", ("R",), "u4", 0),
    ("sms_out", ("R",), "u2", 0),
    ("sms_in", ("R",), "u2", 0),
    ("comp_n", ("R",), "u2", 0),
    ("hot_n", ("R",), "u1", 0),
    ("rch_n", ("R",), "u1", 0),
    ("rch_c", ("R",), "u4", 0),
    ("bits", ("R",), "u8", 0),
    ("c_peer", (K,), "u8", 0),
    ("c_mask", (K,), "u8", 0),
    ("c_last", (K,), "i4", NODAY),
    ("c_sec", (K,), "u4", 0),
    ("c_cnt", (K,), "u2", 0),
    ("c_comp", (K,), "u1", 0),
    ("hwm", (NSRC,), "i8", -1),
    ("imei_h", (2,), "u8", 0),
    ("imei_d", (2,), "i4", NODAY),
    ("first_day", (), "i4", 2**31 - 1),
    ("last_active", (), "i4", NODAY),
    ("rch_count", (), "u4", 0),
    ("rch_first", (), "f8", math.inf),
    ("rch_last", (), "f8", -math.inf),
    ("rch_sum", (), "i8", 0),
    ("plan", (), "i1", 0),
    ("activated", (), "i4", -1),
    ("arpu_c", (), "i8", -1),
    ("key_group", (), "i1", -1),
    ("profile_ts", (), "f8", -math.inf),
    ("dual_day", (), "i4", NODAY),
    ("dual_n", (), "u1", 0),
    ("phase", (), "i1", 0),
    ("episode", (), "i4", 0),
    ("last_emit_day", (), "i4", NODAY),
    ("last_emit_sev", (), "i1", 0),
    ("emitted", (), "u1", 0),
    ("clear_day", (), "i4", NODAY),
    ("sh_peer", (), "u8", 0),  # the shadow competitor number (national), 0 = none
    ("sh_first", (), "i4", NODAY),  # the day it was first seen
    ("sh_day", (), "i4", NODAY),  # the day of the latest confirming evidence
    ("sh_mask", (), "u2", 0),  # circle buckets (members) it reaches
    ("sh_j", (), "u2", 0),  # its Jaccard estimate, in thousandths
    ("sh_pub", (), "i4", NODAY),  # the day this subscriber last published its circle's bands
    ("sh_hash", (), "u8", 0),  # the strong circle published then (xor of member hashes)
    ("rch_prev", (), "f8", -math.inf),  # the latest recharge ts on a day before rch_last's day
    ("imm_day", (), "i4", NODAY),  # the day of the last immediate (care-line dial) alarm
    ("ep_day", (), "i4", NODAY),  # the decision day the current episode began (a recovery)
    ("dual_prev", (), "i4", NODAY),  # the latest dual-SIM evidence day before dual_day
    ("sw_h", (), "u8", 0),  # the handset (IMEI hash) this number last switched to (0: none) ...
    ("sw_d", (), "i4", NODAY),  # ... and the day
    ("dec_day", (), "i4", NODAY),  # the last day decided for this subscriber (a worker may take it over)
    # a care-line dial applied before the decisions reached its point (Engine.judge_dials): its
    # day, time and the dials counted up to it; judged once they have (NODAY: none waiting)
    ("dial_day", (), "i4", NODAY),
    ("dial_ts", (), "f8", -math.inf),
    ("dial_n", (), "u2", 0),
)
_V2_FIELDS = ("clear_day",)  # appended in snapshot version 2 (a version-1 snapshot restores them initial)
_V3_FIELDS = ("sh_peer", "sh_first", "sh_day", "sh_mask", "sh_j", "sh_pub", "sh_hash")  # version 3
_V4_FIELDS = ("rch_prev", "imm_day", "ep_day", "dual_prev", "sw_h", "sw_d")  # version 4
_V5_FIELDS = ("dec_day",)  # version 5
_V7_FIELDS = ("dial_day", "dial_ts", "dial_n")  # version 7
_LATER = _V2_FIELDS + _V3_FIELDS + _V4_FIELDS + _V5_FIELDS + _V7_FIELDS
_ADDED_IN = {2: _V2_FIELDS, 3: _V3_FIELDS, 4: _V4_FIELDS, 5: _V5_FIELDS, 7: _V7_FIELDS}
assert tuple(f[0] for f in FIELDS[-len(_LATER) :]) == _LATER


def fields_of(version: int) -> tuple:
    """The fields a snapshot of ``version`` holds (dense or sparse), in order: ``FIELDS`` without
    those added in later versions (they restore to their initial value)."""
    later = {f for v, names in _ADDED_IN.items() if v > version for f in names}
    return tuple(f for f in FIELDS if f[0] not in later)


@functools.cache
def initial_body(ring: int, version: int = SNAPSHOT_VERSION) -> bytes:
    """A fresh subscriber's snapshot fields (every field at its initial value, ``ring`` days) in
    the dense layout of ``version``'s fields: the base that the sparse snapshots (versions 6 and 7)
    are encoded against."""
    return b"".join(
        np.full(tuple(ring if x == "R" else x for x in tail), init, dtype=dt).tobytes()
        for _, tail, dt, init in fields_of(version)
    )


_FIELD_NAMES = tuple(name for name, _, _, _ in FIELDS)


@functools.lru_cache(maxsize=8)
def _record_dtype(ring: int) -> np.dtype:
    """A snapshot body as one record: the fields in snapshot order, unaligned (the dense
    version-5 layout, ``initial_body``'s bytes), zero-padded to whole 8-byte words."""
    spec = [
        (name, dt, shape) if shape else (name, dt)
        for name, tail, dt, _ in FIELDS
        for shape in [tuple(ring if x == "R" else x for x in tail)]
    ]
    size = np.dtype(spec).itemsize
    pad = -size % 8
    return np.dtype(spec + [("_pad", "u1", (pad,))] if pad else spec)


# engine-internal, not part of a subscriber's snapshot (pure caches)
_CACHE_FIELDS = (("dirty", (), "u1", 1), ("eval_day", (), "i4", NODAY), ("alive", (), "u1", 0))
_SAT = {np.dtype(t): np.iinfo(np.dtype(t)).max for t in ("u1", "u2", "u4")}
NO_CONTACTS = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))
NO_ROWS = np.zeros(0, dtype=np.int64)
DRIFT_RECENT, DRIFT_OLD = 14, 28  # the long-memory windows: the last 14 days vs days 36-63 before
EVAL_CHUNK = 65536  # rows evaluated at once by a decision (bounds the feature arrays' memory)


class Applied(NamedTuple):
    """What :meth:`Engine.apply` did with a batch."""

    rows: np.ndarray  # rows with applied events, and rows whose dual-SIM evidence changed (persist them)
    rejects: list  # Reject(index, "late" | "future", detail), by index
    skipped: int  # events at or below the offsets already applied (replays)
    contacts: tuple  # the second-SIM join's observations (competitor number, member, day)
    immediate: list  # (row, day, ts, dials): care-line dials that trip competitor_hotline at once
    # the rows this batch created (new subscribers; a freed row reused) and, for each, the batch
    # position of the event that created it
    created: tuple = ((), ())


class Decision(NamedTuple):
    """What :meth:`Engine.decide` decided for one day."""

    alarms: list  # alarm records (contract), by msisdn
    rows: np.ndarray  # rows decided (each changed: at least its decided day; persist them)


def contact_candidates(batch: Batch, ok: np.ndarray) -> np.ndarray:
    """Events that may feed the second-SIM join: valid calls and SMS with a competitor peer, hotlines excluded."""
    return ok & ((batch.kind == KIND_CALL) | (batch.kind == KIND_SMS)) & batch.comp & ~batch.hotline & (batch.peer != 0)


def shadow_contacts(batch: Batch, sel: np.ndarray, country_code: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The second-SIM join's stage-1 input from a decoded batch: the distinct (competitor number, our
    subscriber, day) of the events ``sel``, national numbers."""
    if not sel.any():
        return NO_CONTACTS
    pos = np.flatnonzero(sel)
    ms = list(map(batch.msisdn.__getitem__, pos.tolist()))
    key = keys_of(ms)  # (the row index's keys: the number's value in the low bits, up to 15 digits)
    member = key & KEY_VALUE_MASK
    for j in np.flatnonzero(key == 0).tolist():  # longer numbers (the contract allows 20 digits)
        m = ms[j]
        member[j] = int(m) if m.isdigit() and len(m) <= 19 else 0
    keep = member != 0
    x = _sh.national(batch.peer[pos][keep], country_code)
    m = _sh.national(member[keep], country_code)
    d = batch.day[pos][keep].astype(np.int64)
    if not len(x):
        return NO_CONTACTS
    u = np.unique(np.stack([x, m, d.astype(np.uint64)], axis=1), axis=0)
    return u[:, 0].copy(), u[:, 1].copy(), u[:, 2].astype(np.int64)


DAY_FIELDS = (
    "calls_out",
    "calls_in",
    "sec_out",
    "sec_in",
    "sms_out",
    "sms_in",
    "comp_n",
    "hot_n",
    "rch_n",
    "rch_c",
    "bits",
)


def day_dict(date: str, v: dict) -> dict:
    """One day of the ring as the web view shows it."""
    return {
        "date": date,
        "calls_out": v["calls_out"],
        "calls_in": v["calls_in"],
        "minutes_out": round(v["sec_out"] / 60, 1),
        "minutes_in": round(v["sec_in"] / 60, 1),
        "sms_out": v["sms_out"],
        "sms_in": v["sms_in"],
        "contacts": int(v["bits"]).bit_count(),
        "competitor_contacts": v["comp_n"],
        "competitor_hotline": v["hot_n"],
        "recharges": v["rch_n"],
        "recharge_amount": v["rch_c"] / 100,
    }


def _popcount(a: np.ndarray) -> np.ndarray:
    return np.bitwise_count(a).astype(np.int64)


def _traffic_drop(use: np.ndarray, metrics, base: slice, span: slice, nbase: int, nspan: int):
    """Per row: (the sum over ``metrics`` of the drop of ``span``'s daily mean against ``base``'s,
    how many metrics count). A metric counts when its base total reaches its minimum; ``use`` masks
    the days (valid, not a holiday), ``nbase``/``nspan`` are the days each mean divides by."""
    tot = np.zeros(len(use))
    cnt = np.zeros(len(use), dtype=np.int64)
    for arr, mn in metrics:
        used = np.where(use, arr, 0)
        sb = used[:, base].sum(1)
        sp = used[:, span].sum(1)
        inc = sb >= mn
        rb = sb / max(nbase, 1)
        rp = sp / max(nspan, 1)
        drop = np.where(inc, np.clip(1.0 - rp / np.where(inc, rb, 1.0), 0.0, 1.0), 0.0)
        tot = tot + drop
        cnt = cnt + inc
    return tot, cnt


def _shortfall_z(used: np.ndarray, base: slice, span: slice, nbase: int, nspan: int) -> np.ndarray:
    """Per row: how many Poisson standard deviations the events of ``span`` fall short of what
    ``base``'s daily mean expects of it (negative: above it)."""
    e = used[:, base].sum(1) / max(nbase, 1) * nspan
    return (e - used[:, span].sum(1)) / np.sqrt(np.maximum(e, 1.0))


def _lowbits(k: np.ndarray) -> np.ndarray:
    """uint64 with the low k bits set (k clipped to 0..64)."""
    k = np.clip(k, 0, 64).astype(np.uint64)
    out = np.where(k >= 64, _U64_ALL, (np.uint64(1) << np.minimum(k, np.uint64(63))) - np.uint64(1))
    return out.astype(np.uint64)


def window_mask(last: np.ndarray, a: int | np.ndarray, b: int | np.ndarray) -> np.ndarray:
    """Bits of a contact-day mask (bit j = day last-j) that fall in days [a, b]."""
    last = last.astype(np.int64)
    lo = last - b  # lowest bit index
    hi = last - a  # highest bit index
    lo_c = np.clip(lo, 0, 64)
    hi_c = np.clip(hi + 1, 0, 64)
    m = _lowbits(hi_c) & ~_lowbits(lo_c)
    return np.where((hi < 0) | (lo > 63) | (hi < lo) | (last == NODAY), np.uint64(0), m).astype(np.uint64)


def accept_watermark(ts: np.ndarray, live: np.ndarray, wm0: float, F: float) -> np.ndarray:
    """Events accepted by the sequential rule "reject ts > watermark + F, the watermark being the max
    ts accepted so far (wm0 before the batch)". Grows a set of certainly-accepted events to its fixed
    point (each round: events within F of the running max of the accepted ones so far); falls back to
    a plain loop in adversarial cases."""
    if not math.isfinite(wm0):
        # no watermark yet: the first live event sets it
        first = np.flatnonzero(live)
        if not len(first):
            return live.copy()
        wm0 = float(ts[first[0]])
    acc = live & (ts <= wm0 + F)
    for _ in range(6):
        run = np.maximum.accumulate(np.where(acc, ts, -math.inf))
        prev = np.maximum(np.r_[wm0, run[:-1]], wm0)
        nxt = acc | (live & (ts <= prev + F))
        if (nxt == acc).all():
            return acc
        acc = nxt
    out = np.zeros(len(ts), dtype=bool)
    wm = wm0
    for i in np.flatnonzero(live).tolist():
        t = float(ts[i])
        if t <= wm + F:
            out[i] = True
            if t > wm:
                wm = t
    return out


GAP_CONFIRM = 3  # consecutive events past the future bound, within it of each other: a gap in the feed


def accept_gaps(
    ts: np.ndarray, live: np.ndarray, wm0: float, F: float, gap: tuple[float, int] | None
) -> tuple[np.ndarray, tuple[float, int] | None]:
    """Event time only (the backtest, no wall clock): :func:`accept_watermark`'s rule, "reject
    ts > watermark + F", but for a gap in the feed. The live worker judges the future against the
    wall clock, so after an outage of the feed it takes the events that resume it; the file of the
    same history has a jump in event time there. ``GAP_CONFIRM`` consecutive live events past the
    bound, all within ``F`` of the first of them, are such a jump: the last of them is accepted and
    moves the watermark (the ones before it are rejected as future), so the rest of the feed after
    an outage is not lost; a lone corrupt timestamp, followed by an event within the bound, stays
    rejected. ``gap``: (the first ts of the run, its length) carried between batches, None when the
    last live event was accepted. Returns (accepted, gap after)."""
    acc = accept_watermark(ts, live, wm0, F)
    if gap is None and not (live & ~acc).any():
        return acc, None  # (the common case: no event past the bound, none pending)
    out = np.zeros(len(ts), dtype=bool)
    wm = wm0
    for i in np.flatnonzero(live).tolist():
        t = float(ts[i])
        if not math.isfinite(wm) or t <= wm + F:
            out[i], gap = True, None
        elif gap is not None and abs(t - gap[0]) <= F and gap[1] + 1 >= GAP_CONFIRM:
            out[i], gap = True, None
        else:
            gap = (gap[0], gap[1] + 1) if gap is not None and abs(t - gap[0]) <= F else (t, 1)
            continue
        wm = t if not math.isfinite(wm) else max(wm, t)
    return out, gap


def lapse_min_count(cfg: EngineConfig) -> int:
    """The fewest recharges a prepaid subscriber needs to be judged for a lapse (priors lower it)."""
    if cfg.recharge_prior_days <= 0:
        return cfg.recharge_min_count
    return 0 if cfg.recharge_prior_unseen else 1


def mix_np(peer: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return peer.astype(np.uint64) * _GOLD


def circle_comp(old: bool, comp: bool, last: int, d: int) -> bool:
    """A circle peer's competitor flag after a contact on day ``d`` (``last``: the peer's newest
    contact day before it, NODAY after a replacement): the peer's network on its newest contact
    day, a rival if any event of that day says so. A function of the events, not of their
    arrival order: a peer porting out on a day has events of both networks that day, and the
    calls and SMS topics interleave differently live and in a file."""
    if d > last:
        return comp
    return old or comp if d == last else old


class Engine:
    """Vectorised engine. See the package docstring for the API."""

    # compute every feature, also those their config switches off (``churnwatch tune`` records them)
    all_features = False

    def __init__(self, config: EngineConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or EngineConfig()
        self.clock = clock
        self.R = self.config.ring_days
        self._cap = 0
        self._n = 0  # high-water row count
        self._free: list[int] = []
        # a care-line dial may wait in some row (deferred, or restored from a snapshot): judge_dials
        # scans the rows only then
        self._dials_waiting = False
        self._row: dict[str, int] = {}
        self._index = RowIndex()  # the same, for a batch's lookups at once (stream/engine/rowindex.py)
        self._msisdn: list[str | None] = []
        self._a: dict[str, np.ndarray] = {}
        # IMEI -> this engine's numbers on it, and their switches (stream/engine/handsets.py)
        self._handsets = HandsetIndex(self.config.dual_sim_days)
        # the switches it indexes, for the other workers' engines (recorded when route_handsets is
        # set: the service; a single engine over all numbers needs none)
        self.route_handsets = False
        self._hs_ops: list[Switch] = []
        self._wm: float | None = None
        self._gap: tuple[float, int] | None = None  # without a clock: a run of events past the future bound
        self._seq = 0
        self._extra: set[int] = set()
        # the second-SIM join's circle publications, decided at evaluations and shipped by the
        # caller (stream/engine/shadow.py); the contacts come back from apply
        self.shadow_publications: list[dict] = []
        self._shadow_log: list | None = None  # (tests/tuning) every candidate's measures
        self.counters: dict[str, int] = {}
        self._hol = np.array(sorted(self.config.holiday_days), dtype=np.int64)
        # feed outages (void_fraction): each day's calls + SMS over every row, cached until an event
        # of that day is applied or rows come and go; the void days each decided day reads
        self._tot_cache: dict[int, tuple[int, int, int]] = {}
        self._void_memo: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lapse_min_count = lapse_min_count(self.config)
        self._grow(1024)

    # ------------------------------------------------------------------ storage
    def _shape(self, tail: tuple) -> tuple:
        return tuple(self.R if x == "R" else x for x in tail)

    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, self._cap * 2, 1024)
        for name, tail, dt, init in FIELDS + _CACHE_FIELDS:
            new = np.full((cap,) + self._shape(tail), init, dtype=dt)
            old = self._a.get(name)
            if old is not None:
                new[: self._cap] = old
            self._a[name] = new
        self._msisdn.extend([None] * (cap - self._cap))
        self._cap = cap

    def _reset_rows(self, rows: np.ndarray) -> None:
        for name, _tail, _dt, init in FIELDS + _CACHE_FIELDS:
            self._a[name][rows] = init
        self._tot_cache.clear()
        self._void_memo.clear()

    def _new_row(self, msisdn: str) -> int:
        if self._free:
            r = self._free.pop()
        else:
            r = self._n
            self._n += 1
            self._grow(self._n)
        self._row[msisdn] = r
        self._index.add(msisdn, r)
        self._msisdn[r] = msisdn
        self._a["alive"][r] = 1
        return r

    @property
    def state_bytes_per_subscriber(self) -> int:
        return int(
            sum(np.dtype(dt).itemsize * int(np.prod(self._shape(tail), dtype=np.int64)) for _, tail, dt, _ in FIELDS)
        )

    def __iter__(self):
        """The msisdns the engine holds state for."""
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, msisdn) -> bool:
        return msisdn in self._row

    def row_of(self, msisdn: str) -> int | None:
        return self._row.get(msisdn)

    def msisdns(self, rows) -> list[str]:
        return list(map(self._msisdn.__getitem__, np.asarray(rows, dtype=np.int64).tolist()))

    def rows_of(self, msisdns) -> np.ndarray:
        """The row of each of ``msisdns`` (-1: not a subscriber of this engine), in one pass."""
        return self._index.lookup(msisdns)

    @property
    def watermark_s(self) -> float | None:
        return self._wm

    def accepts(self, ts: np.ndarray) -> np.ndarray:
        """Which of these event times :meth:`apply` (without a clock) would accept as not in the
        future, from the current state, in this order (:func:`stream.engine.step.segments`)."""
        cfg = self.config
        wm0 = -math.inf if self._wm is None else self._wm
        live = np.ones(len(ts), dtype=bool)
        return accept_gaps(ts, live, wm0, min(cfg.max_future_s, cfg.max_watermark_jump_s), self._gap)[0]

    def advance_watermark(self, ts: float) -> None:
        """Move event time forward to ``ts`` (never back): a restarted service restores the
        watermark it had persisted, so that evaluation never runs at an earlier time than before."""
        self._wm = float(ts) if self._wm is None else max(self._wm, float(ts))

    def day_of(self, ts: float) -> int:
        return self.config.day_of(ts)

    def _now(self) -> float:
        """Wall-clock time for ``emitted_at``; event time (the watermark) when the engine runs
        without a clock (the backtest)."""
        if self.clock is not None:
            return float(self.clock())
        return float(self._wm) if self._wm is not None else 0.0

    def _fday(self, ts: np.ndarray) -> np.ndarray:
        """Day index of float timestamps (-inf stays -inf)."""
        return np.floor((ts + self.config.utc_offset_s) / 86400.0)

    def _count(self, key: str, n: int = 1) -> None:
        if n:
            self.counters[key] = self.counters.get(key, 0) + int(n)

    # ------------------------------------------------------------------ decode
    def decode(self, raws: Sequence[bytes], keys=None, src=None, offsets=None) -> tuple[Batch, list[Reject]]:
        batch, rejects = decode(raws, keys, src, offsets, config=self.config, seq_start=self._seq)
        if offsets is None:
            self._seq += len(raws)
        for r in rejects:
            self._count("rejected_" + r.reason)
        return batch, rejects

    # ------------------------------------------------------------------ apply
    def apply(self, batch: Batch, judged_through: int | None = None) -> Applied:
        """Apply a decoded batch. ``judged_through``: the last day decided (a care-line dial whose
        point lies past it waits for the decisions: :meth:`judge_dials`); None judges every dial
        at once."""
        cfg = self.config
        a = self._a
        n = len(batch)
        if n == 0:
            return Applied(NO_ROWS, [], 0, NO_CONTACTS, [])
        get = self._row.get
        rows = self._index.lookup(batch.msisdn)
        src = batch.src
        off = batch.off
        # --- idempotence: skip offsets at or below what was applied (per subscriber and source)
        known = rows >= 0
        hwm0 = np.full(n, -1, dtype=np.int64)
        hwm0[known] = a["hwm"][rows[known], src[known]]
        skipped = off <= hwm0
        # within the batch: an offset at or below an earlier offset of the same (subscriber, source)
        if n > 1 and not (off[1:] > off[:-1]).all():  # (strictly increasing offsets: no duplicates)
            gid = rows
            if not known.all():
                gid = rows.copy()
                tmp: dict[str, int] = {}
                for i in np.flatnonzero(~known).tolist():
                    gid[i] = self._cap + tmp.setdefault(batch.msisdn[i], len(tmp))
            key = gid * NSRC + src
            order = np.argsort(key, kind="stable")
            ks = key[order]
            _, rank = np.unique(off[order], return_inverse=True)
            rank = rank.astype(np.int64)
            grp = np.cumsum(np.r_[True, ks[1:] != ks[:-1]]) - 1
            base = grp * (n + 1)
            cm = np.maximum.accumulate(rank + base + 1) - base  # running max (+1) within the group
            prev = np.r_[0, cm[:-1]]
            prev[np.r_[True, ks[1:] != ks[:-1]]] = 0
            dup = np.zeros(n, dtype=bool)
            dup[order] = prev >= rank + 1
            skipped |= dup
        # --- future and late (sequential semantics, computed as a fixed point)
        ts = batch.ts
        day = batch.day
        F = cfg.max_future_s
        wm0 = -math.inf if self._wm is None else self._wm
        if self.clock is None:  # event time only (the backtest): the future bound is the watermark's
            fut = np.zeros(n, dtype=bool)
            live = ~skipped
            cand, self._gap = accept_gaps(ts, live, wm0, min(F, cfg.max_watermark_jump_s), self._gap)
        else:
            fut = ~skipped & (ts > self.clock() + F)
            live = ~skipped & ~fut
            cand = accept_watermark(ts, live, wm0, cfg.max_watermark_jump_s)
        fut |= live & ~cand
        late = self._late(batch, rows, cand)
        acc = cand & ~late
        contacts = NO_CONTACTS
        if cfg.shadow_enabled:
            # contacts the member's circle already holds for that day are known upstream (sent
            # with the event that set the day): not sent again. Replays always are (the sketches
            # take minima, so a resend is harmless, and a crash between the state write and the
            # send must not lose the contact).
            sel = contact_candidates(batch, ~fut & ~late)
            known = np.flatnonzero(sel & ~skipped & (rows >= 0))
            if len(known):
                pk = batch.peer[known]
                bk = (mix_np(pk) >> np.uint64(60)).astype(np.int64)
                rk = rows[known]
                bit = a["c_last"][rk, bk].astype(np.int64) - day[known]
                inb = (bit >= 0) & (bit < 64)
                have = (
                    (a["c_peer"][rk, bk] == pk)
                    & inb
                    & (((a["c_mask"][rk, bk] >> np.clip(bit, 0, 63).astype(np.uint64)) & np.uint64(1)) == 1)
                )
                sel[known[have]] = False
            contacts = shadow_contacts(batch, sel, cfg.country_code)
        # --- rows for new subscribers with an accepted event (first appearance order)
        new = acc & (rows < 0)
        created: tuple[list[int], list[int]] = ([], [])
        if new.any():
            for i in np.flatnonzero(new).tolist():
                m = batch.msisdn[i]
                r = get(m)
                if r is None:
                    r = self._new_row(m)
                    created[0].append(r)
                    created[1].append(i)
                rows[i] = r
            a = self._a
            # other (rejected) events of the same new subscriber
            miss = np.flatnonzero((rows < 0) & ~skipped)
            for i in miss.tolist():
                r = get(batch.msisdn[i])
                if r is not None:
                    rows[i] = r
        # --- offsets high-water mark: every non-skipped event of a subscriber in state
        upd = ~skipped & (rows >= 0)
        if upd.any():
            np.maximum.at(a["hwm"], (rows[upd], src[upd]), off[upd])
        # --- rejects and counters
        n_skipped = int(skipped.sum())
        self._count("skipped", n_skipped)
        rej = []
        for i in np.flatnonzero(fut).tolist():
            rej.append(Reject(int(batch.idx[i]), "future", f"ts={ts[i]}"))
        for i in np.flatnonzero(late).tolist():
            rej.append(Reject(int(batch.idx[i]), "late", f"ts={ts[i]}"))
        rej.sort(key=lambda r: r.index)
        self._count("rejected_future", int(fut.sum()))
        self._count("rejected_late", int(late.sum()))
        if not acc.any():
            return Applied(NO_ROWS, rej, n_skipped, contacts, [], created)
        if not acc.all():
            pos = np.flatnonzero(acc)
            b = batch.take(pos)
            rows = rows[pos]
        else:
            b = batch
        self._wm = max(wm0, float(b.ts.max()))
        kind = b.kind
        for kname, kc in (
            ("call", KIND_CALL),
            ("sms", KIND_SMS),
            ("recharge", KIND_RECHARGE),
            ("profile", KIND_PROFILE),
        ):
            self._count("applied_" + kname, int((kind == kc).sum()))
        self._extra: set[int] = set()
        hits = self._immediate_hits(b, rows, judged_through) if b.hotline.any() else []
        self._apply_accepted(b, rows)
        touched = np.unique(rows)
        if self._extra:  # other subscribers whose state changed (dual-SIM evidence on a shared handset)
            touched = np.unique(np.r_[rows, np.fromiter(self._extra, np.int64, len(self._extra))])
        return Applied(touched, rej, n_skipped, contacts, hits, created)

    def _immediate_hits(
        self, b: Batch, rows: np.ndarray, judged_through: int | None
    ) -> list[tuple[int, int, float, int]]:
        """Care-line dials that trip competitor_hotline by themselves, judged one dial at a time in
        arrival order (the ring as it was before the batch, plus the subscriber's earlier dials in
        it), so the result does not depend on batch boundaries: a dial trips when the dials within
        ``hotline_days`` up to its day reach ``hotline_min_calls``, once per episode (``imm_day``
        before ``ep_day``, the day a recovery started the current one). The episode is the one the
        decisions up to the dial's point give (:meth:`dial_point`): a dial past ``judged_through``
        waits in the subscriber's state (``dial_*``) until they have been made (:meth:`judge_dials`;
        the earliest such dial per subscriber). Called before the batch is applied."""
        cfg = self.config
        a = self._a
        R = self.R
        out = []
        earlier: dict[int, list[int]] = {}
        for i in np.flatnonzero(b.hotline).tolist():
            r, d = int(rows[i]), int(b.day[i])
            lo = d - cfg.hotline_days + 1
            mine = earlier.setdefault(r, [])
            cnt = sum(int(a["hot_n"][r, x % R]) for x in range(lo, d + 1) if int(a["stamp"][r, x % R]) == x)
            cnt += sum(1 for x in mine if lo <= x <= d) + 1
            mine.append(d)
            if cnt < cfg.hotline_min_calls:
                continue
            ts = float(b.ts[i])
            if judged_through is not None and self.dial_point(ts) > judged_through:
                if int(a["dial_day"][r]) == NODAY:
                    a["dial_day"][r], a["dial_ts"][r], a["dial_n"][r] = d, ts, min(cnt, 65535)
                    self._dials_waiting = True
                continue
            last = int(a["imm_day"][r])
            if last == NODAY or last < int(a["ep_day"][r]):
                a["imm_day"][r] = d
                out.append((r, d, ts, cnt))
        return out

    def dial_point(self, ts: float) -> int:
        """The last day whose decision a care-line dial at ``ts`` is judged after: the day that
        event time ``ts`` lets decide (``decision_grace_s`` into it; as ``Step.due``)."""
        return self.day_of(ts - self.config.decision_grace_s)

    def judge_dials(self, through: int) -> tuple[list[tuple[int, int, float, int]], np.ndarray]:
        """Judge the dials that waited for the decisions (:meth:`_immediate_hits`) whose point is
        at or before day ``through``, now decided, in the order of their time: (the hits, as
        ``Applied.immediate``; the rows whose state changed). Call after each day decided, before
        the next one; and, for dials restored from a snapshot (a worker that took the subscriber
        over may have decided their point already), at every step."""
        if not self._dials_waiting:
            return [], NO_ROWS
        a = self._a
        rows = np.flatnonzero(a["dial_day"][: self._n] != NODAY)
        if not len(rows):
            self._dials_waiting = False
            return [], NO_ROWS
        ts = a["dial_ts"][rows]
        cfg = self.config
        # dial_point for all of them (float floor division, as EngineConfig.day_of)
        ready = np.floor_divide(ts - cfg.decision_grace_s + cfg.utc_offset_s, 86400.0) <= through
        rows, ts = rows[ready], ts[ready]
        out = []
        for j in np.lexsort((rows, ts)).tolist():
            r = int(rows[j])
            d, cnt = int(a["dial_day"][r]), int(a["dial_n"][r])
            a["dial_day"][r], a["dial_ts"][r], a["dial_n"][r] = NODAY, -math.inf, 0
            last = int(a["imm_day"][r])
            if last == NODAY or last < int(a["ep_day"][r]):
                a["imm_day"][r] = d
                out.append((r, d, float(ts[j]), cnt))
        return out, rows

    def _late(self, batch: Batch, rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Late = older than the subscriber's own ring can hold: a call, SMS or recharge whose day
        is ``ring_days`` or more before the newest day in that subscriber's ring (as it was before
        the batch, or raised by an earlier event of the batch). Judged per subscriber, never
        against events of other subscribers or other partitions, so a backlog read in any
        interleaving of partitions and topics loses nothing that the ring can hold. Profiles do
        not go into the ring and are never late (the latest by ``ts`` wins)."""
        n = len(batch)
        ring = cand & (batch.kind != KIND_PROFILE)
        if not ring.any():
            return np.zeros(n, dtype=bool)
        day = batch.day.astype(np.int64)
        newest = np.full(n, NODAY, dtype=np.int64)
        known = rows >= 0
        if known.any():
            newest[known] = self._a["stamp"][rows[known]].max(axis=1)
        # the newest ring day of earlier events of the same subscriber in this batch (exclusive
        # running max per subscriber; events that are not candidates contribute nothing)
        gid = rows.copy()
        if not known.all():
            tmp: dict[str, int] = {}
            for i in np.flatnonzero(~known).tolist():
                gid[i] = self._cap + tmp.setdefault(batch.msisdn[i], len(tmp))
        order = np.argsort(gid, kind="stable")
        g = gid[order]
        start = np.r_[True, g[1:] != g[:-1]]
        grp = np.cumsum(start) - 1
        dmin = int(day.min())
        span = int(day.max()) - dmin + 2
        v = np.where(ring[order], day[order] - dmin + 1, 0) + grp * span
        run = np.maximum.accumulate(v)
        prev = np.r_[0, run[:-1]] - grp * span  # exclusive; <= 0: no earlier event in the group
        prev[start] = 0
        in_batch = np.full(n, NODAY, dtype=np.int64)
        in_batch[order] = np.where(prev > 0, prev - 1 + dmin, NODAY)
        top = np.maximum(newest, in_batch)
        return ring & (top != NODAY) & (day <= top - self.R)

    def _apply_accepted(self, b: Batch, rows: np.ndarray) -> None:
        cfg = self.config
        a = self._a
        R = self.R
        kind = b.kind
        day = b.day
        wm_day = cfg.day_of(self._wm)
        dirty = a["dirty"]
        np.minimum.at(a["first_day"], rows, day.astype(np.int32))
        # rows with changes to complete days, hotline dials, recharges or profiles: features changed
        mark = (day < wm_day) | b.hotline | (kind == KIND_RECHARGE) | (kind == KIND_PROFILE)
        dirty[rows[mark]] = 1
        cs = (kind == KIND_CALL) | (kind == KIND_SMS)
        # ---------------- last active day
        if cs.any():
            r_cs = rows[cs]
            la = a["last_active"]
            before = la[r_cs].copy()
            np.maximum.at(la, r_cs, day[cs].astype(np.int32))
            ch = la[r_cs] != before
            dirty[r_cs[ch]] = 1
        # ---------------- ring of daily buckets
        rg = kind != KIND_PROFILE
        if rg.any():
            r = rows[rg]
            d = day[rg]
            k = kind[rg]
            out = b.out[rg]
            flat = r * R + d % R
            uk, inv = np.unique(flat, return_inverse=True)
            maxd = np.full(len(uk), np.iinfo(np.int64).min, dtype=np.int64)
            np.maximum.at(maxd, inv, d)
            stamp = a["stamp"].reshape(-1)
            cur = stamp[uk].astype(np.int64)
            clear = cur < maxd
            if self._tot_cache:  # the day totals this batch changes: the days written, and the days a
                # reused slot held (an event far ahead of the others, within the future bound,
                # reuses a slot inside the window)
                for day_changed in np.unique(np.r_[maxd, cur[clear]]).tolist():
                    self._tot_cache.pop(day_changed, None)
            if clear.any():
                cu = uk[clear]
                for name in DAY_FIELDS:
                    a[name].reshape(-1)[cu] = 0
                stamp[cu] = maxd[clear]
            keep = d == maxd[inv]
            keep &= cur[inv] <= d  # (never false: older days are late)
            inv_k = inv[keep]
            kk = k[keep]
            ok = out[keep]
            nu = len(uk)
            is_call = kk == KIND_CALL
            is_sms = kk == KIND_SMS

            def add(name: str, w: np.ndarray | None, sel: np.ndarray) -> None:
                if not sel.any():
                    return
                s = np.bincount(inv_k[sel], weights=None if w is None else w[sel], minlength=nu)
                nz = np.flatnonzero(s)
                if not len(nz):
                    return
                arr = a[name].reshape(-1)
                tgt = uk[nz]
                v = arr[tgt].astype(np.int64) + s[nz].astype(np.int64)
                arr[tgt] = np.minimum(v, _SAT[arr.dtype])

            dur = b.dur[rg][keep].astype(np.float64)
            add("calls_out", None, is_call & ok)
            add("calls_in", None, is_call & ~ok)
            add("sec_out", dur, is_call & ok)
            add("sec_in", dur, is_call & ~ok)
            add("sms_out", None, is_sms & ok)
            add("sms_in", None, is_sms & ~ok)
            add("comp_n", None, (is_call | is_sms) & b.comp[rg][keep])
            add("hot_n", None, b.hotline[rg][keep])
            is_r = kk == KIND_RECHARGE
            add("rch_n", None, is_r)
            add("rch_c", b.cents[rg][keep].astype(np.float64), is_r)
            csk = is_call | is_sms
            if csk.any():
                mixed = mix_np(b.peer[rg][keep][csk])
                bit = np.uint64(1) << ((mixed >> np.uint64(52)) & np.uint64(63))
                np.bitwise_or.at(a["bits"].reshape(-1), uk[inv_k[csk]], bit)
        # ---------------- contact circle
        if cs.any():
            self._apply_circle(rows[cs], b.peer[cs], day[cs], b.dur[cs], b.comp[cs], wm_day)
        # ---------------- handsets
        im = b.imei != 0
        if im.any():
            r = rows[im]
            h = b.imei[im]
            d = day[im]
            ih = a["imei_h"][r]
            idd = a["imei_d"][r].astype(np.int64)
            seen = ((ih == h[:, None]) & (idd >= d[:, None])).any(axis=1)
            todo = np.flatnonzero(~seen)
            if len(todo):
                self._apply_handsets(r[todo], h[todo], d[todo], ih[todo])
        # ---------------- recharges
        rc = kind == KIND_RECHARGE
        if rc.any():
            r = rows[rc]
            t = b.ts[rc]
            old_last = a["rch_last"][r]  # (a copy: fancy indexing)
            np.add.at(a["rch_count"], r, 1)
            np.minimum.at(a["rch_first"], r, t)
            np.maximum.at(a["rch_last"], r, t)
            np.add.at(a["rch_sum"], r, b.cents[rc])
            # rch_prev: the latest recharge on a day before the latest recharge's day (the
            # decision of a day that a newer recharge already reached reads that one instead)
            new_day = self._fday(a["rch_last"][r])
            prev = np.where(day[rc] < new_day, t, -math.inf)
            prev = np.maximum(prev, np.where(self._fday(old_last) < new_day, old_last, -math.inf))
            np.maximum.at(a["rch_prev"], r, prev)
        # ---------------- profiles: the latest by ts (ties: the later in arrival order) wins
        pf = kind == KIND_PROFILE
        if pf.any():
            pos = np.flatnonzero(pf)
            r = rows[pos]
            t = b.ts[pos]
            o = np.lexsort((pos, t, r))
            r_o = r[o]
            last = np.r_[r_o[1:] != r_o[:-1], True]
            sel = pos[o[last]]
            rr = rows[sel]
            win = b.ts[sel] >= a["profile_ts"][rr]
            sel, rr = sel[win], rr[win]
            a["profile_ts"][rr] = b.ts[sel]
            a["plan"][rr] = b.plan[sel]
            a["activated"][rr] = b.activated[sel]
            a["arpu_c"][rr] = b.arpu_c[sel]
            a["key_group"][rr] = b.key_group[sel]

    def _apply_circle(self, rows, peer, day, dur, comp, wm_day: int) -> None:
        a = self._a
        R = self.R
        n = len(rows)
        mixed = mix_np(peer)
        bucket = (mixed >> np.uint64(60)).astype(np.int64)
        gk = rows * K + bucket
        order = np.argsort(gk, kind="stable")
        gks = gk[order]
        starts = np.flatnonzero(np.r_[True, gks[1:] != gks[:-1]])
        gsize = np.diff(np.r_[starts, n])
        grp = np.repeat(np.arange(len(starts)), gsize)
        p_s = peer[order]
        first_peer = p_s[starts]
        same = p_s == first_peer[grp]
        single = np.minimum.reduceat(same.astype(np.int8), starts).astype(bool)
        ug = gks[starts]
        cpeer = a["c_peer"].reshape(-1)
        cmask = a["c_mask"].reshape(-1)
        clast = a["c_last"].reshape(-1)
        csec = a["c_sec"].reshape(-1)
        ccnt = a["c_cnt"].reshape(-1)
        ccomp = a["c_comp"].reshape(-1)
        occ = ccnt[ug] > 0
        owner = cpeer[ug]
        d_s = day[order]
        # groups of one peer: hit, replacement at the first event where the owner is weak, or ignore
        hit_g = single & occ & (owner == first_peer)
        foreign_g = single & ~hit_g
        # weakness per event (owner fixed until replaced)
        weak_owner = _popcount(cmask[ug]) <= 1
        last_g = clast[ug].astype(np.int64)
        weak_e = (~occ[grp]) | weak_owner[grp] | (last_g[grp] < d_s - R)
        pos_in = np.arange(n)
        first_weak = np.minimum.reduceat(np.where(weak_e, pos_in, n), starts)
        repl_g = foreign_g & (first_weak < n)
        # events that count: all events of hit groups; events from first_weak on in replaced groups
        use_e = hit_g[grp] | (repl_g[grp] & (pos_in >= first_weak[grp]))
        if repl_g.any():
            t = ug[repl_g]
            # an evicted owner with contact days before today changes the windows: re-evaluate
            ev = t[(ccnt[t] > 0) & (clast[t].astype(np.int64) < wm_day)]
            self._a["dirty"][ev // K] = 1
            cpeer[t] = first_peer[repl_g]
            cmask[t] = 0
            clast[t] = NODAY
            csec[t] = 0
            ccnt[t] = 0
        if use_e.any():
            ue = np.flatnonzero(use_e)
            g = grp[ue]
            gsel, ginv = np.unique(g, return_inverse=True)
            t = ug[gsel]
            dd = d_s[ue]
            maxd = np.full(len(gsel), np.iinfo(np.int64).min, np.int64)
            np.maximum.at(maxd, ginv, dd)
            oldlast = clast[t].astype(np.int64)
            newlast = np.maximum(oldlast, maxd)
            sh = newlast - oldlast
            m0 = cmask[t]
            shifted = np.where(
                (oldlast == NODAY) | (sh >= 64), np.uint64(0), m0 << np.minimum(sh, 63).astype(np.uint64)
            )
            rel = newlast[ginv] - dd
            bits = np.where(rel < 64, np.uint64(1) << np.minimum(rel, 63).astype(np.uint64), np.uint64(0))
            orb = np.zeros(len(gsel), np.uint64)
            np.bitwise_or.at(orb, ginv, bits)
            cmask[t] = shifted | orb
            clast[t] = newlast
            ssum = np.bincount(ginv, weights=dur[order][ue].astype(np.float64), minlength=len(gsel)).astype(np.int64)
            csec[t] = np.minimum(csec[t].astype(np.int64) + ssum, _SAT[np.dtype("u4")])
            cnt = np.bincount(ginv, minlength=len(gsel)).astype(np.int64)
            ccnt[t] = np.minimum(ccnt[t].astype(np.int64) + cnt, _SAT[np.dtype("u2")])
            # competitor flag: the peer's network on its newest contact day, a rival if any event of
            # that day says so (whatever their arrival order); older events leave it (_circle_one)
            at_last = dd == newlast[ginv]
            seen = np.zeros(len(gsel), bool)
            seen[ginv[at_last]] = True
            rival = np.zeros(len(gsel), bool)
            np.logical_or.at(rival, ginv[at_last], comp[order][ue][at_last])
            oldcomp = ccomp[t].astype(bool)
            newcomp = np.where(seen, rival | ((oldlast == newlast) & oldcomp), oldcomp)
            flip = oldcomp != newcomp  # the flag is read for complete days too: re-evaluate
            if flip.any():
                self._a["dirty"][t[flip] // K] = 1
            ccomp[t] = newcomp
        # groups with several peers: event by event
        multi = np.flatnonzero(~single)
        if len(multi):
            for gi in multi.tolist():
                s = starts[gi]
                for j in range(s, s + gsize[gi]):
                    e = order[j]
                    self._circle_one(
                        int(rows[e]), int(bucket[e]), int(peer[e]), int(day[e]), int(dur[e]), bool(comp[e]), wm_day
                    )

    def _circle_one(self, row: int, b: int, peer: int, d: int, dur: int, comp: bool, wm_day: int) -> None:
        """One contact event, sequential semantics (mirrors the reference engine)."""
        a = self._a
        cnt = int(a["c_cnt"][row, b])
        owner = int(a["c_peer"][row, b])
        last = int(a["c_last"][row, b])
        mask = int(a["c_mask"][row, b])
        if not (cnt > 0 and owner == peer):
            weak = cnt == 0 or bin(mask).count("1") <= 1 or last < d - self.R
            if not weak:
                return
            if cnt > 0 and last < wm_day:
                a["dirty"][row] = 1
            a["c_peer"][row, b] = peer
            mask, last, cnt = 0, NODAY, 0
            a["c_sec"][row, b] = 0
        if last == NODAY:
            mask, newlast = 0, d
        else:
            newlast = max(last, d)
            sh = newlast - last
            mask = (mask << sh) & 0xFFFFFFFFFFFFFFFF if sh < 64 else 0
        if newlast - d < 64:
            mask |= 1 << (newlast - d)
        a["c_mask"][row, b] = mask
        a["c_last"][row, b] = newlast
        a["c_sec"][row, b] = min(int(a["c_sec"][row, b]) + dur, 0xFFFFFFFF)
        a["c_cnt"][row, b] = min(cnt + 1, 0xFFFF)
        old = bool(a["c_comp"][row, b])
        new = circle_comp(old, bool(comp), last, d)
        if old != new:
            a["dirty"][row] = 1  # the flag is read for complete days too: re-evaluate
        a["c_comp"][row, b] = new

    def _apply_handsets(self, r: np.ndarray, h: np.ndarray, d: np.ndarray, ih: np.ndarray) -> None:
        """Handset observations that are news (arrival order). The common one, a number using a
        handset it already holds on a later day, is applied in bulk (its day moved up, in the slot
        and the index) when nothing else in the batch can interleave with it: its number and its
        handset meet no other kind of observation in the batch, the handset has no switch indexed
        and the number is in the handset's index. The rest go one by one (:meth:`_imei_one`), as
        the reference engine does; the result is the same as one by one for all."""
        slot_eq = ih == h[:, None]
        known = slot_eq.any(axis=1)
        slow = ~known
        hx = self._handsets
        idx, sw = hx.numbers, hx.switches
        ms = self._msisdn
        if slow.any():
            slow &= ~self._first_handsets(r, h, d, ih, slow)
            slow |= np.isin(r, r[slow]) | np.isin(h, h[slow])
        fast = np.flatnonzero(~slow)
        keep = []
        for j, row, hh, dd in zip(fast.tolist(), r[fast].tolist(), h[fast].tolist(), d[fast].tolist(), strict=True):
            ent = idx.get(hh)
            m = ms[row]
            if hh in sw or ent is None or m not in ent:
                slow[j] = True
                continue
            if dd > ent[m]:
                ent[m] = dd
            keep.append(j)
        if keep:
            k = np.array(keep, dtype=np.int64)
            np.maximum.at(self._a["imei_d"], (r[k], slot_eq[k].argmax(axis=1)), d[k].astype(np.int32))
        for j in np.flatnonzero(slow).tolist():
            self._imei_one(int(r[j]), int(h[j]), int(d[j]))

    def _first_handsets(self, r: np.ndarray, h: np.ndarray, d: np.ndarray, ih: np.ndarray, new: np.ndarray):
        """The first handset of a number that had none, a handset no number of this engine uses
        and none switched to, applied in bulk; returns which observations it took. That is every
        new subscriber's first call, and :meth:`_imei_one` would do just this for it (the slot, the
        index entry, no switch and no evidence); an observation whose number or handset appears
        more than once in the batch is left to it."""
        first = new & (ih == 0).all(axis=1)
        if not first.any():
            return first
        _, inv, cnt = np.unique(r, return_inverse=True, return_counts=True)
        first &= cnt[inv] == 1
        _, inv, cnt = np.unique(h, return_inverse=True, return_counts=True)
        first &= cnt[inv] == 1
        hx = self._handsets
        idx, sw, ms = hx.numbers, hx.switches, self._msisdn
        cols = (np.flatnonzero(first), r[first], h[first], d[first])
        for j, row, hh, dd in zip(*(x.tolist() for x in cols), strict=True):
            if hh in idx or hh in sw:
                first[j] = False
            else:
                idx[hh] = {ms[row]: dd}
        a = self._a
        a["imei_h"][r[first], 0] = h[first]
        a["imei_d"][r[first], 0] = d[first]
        return first

    def _imei_one(self, row: int, h: int, d: int) -> None:
        """One handset observation, sequential semantics (mirrors the reference engine). The
        number's slots here, the index in :class:`HandsetIndex`; a switch it indexes is also
        recorded (route_handsets) for the engines that hold the other numbers."""
        a = self._a
        hs = [int(x) for x in a["imei_h"][row]]
        ds = [int(x) for x in a["imei_d"][row]]
        m = self._msisdn[row]
        hx = self._handsets
        # a switch: a handset new to this number, which used another one before
        switched = h not in hs and any(x != 0 for x in hs)
        if h in hs:
            j = hs.index(h)
            if d <= ds[j]:
                return
            a["imei_d"][row, j] = d
        else:
            if 0 in hs:
                j = hs.index(0)
            else:
                j = min((0, 1), key=lambda x: (ds[x], hs[x]))
                if not (d, h) > (ds[j], hs[j]):
                    return
                hx.drop(hs[j], m)
            a["imei_h"][row, j] = h
            a["imei_d"][row, j] = d
        # the index holds each number's latest switch only (as a restore rebuilds it)
        latest = switched and d >= int(a["sw_d"][row])
        old = int(a["sw_h"][row])
        ev = hx.use(h, m, d, (SWITCHED if switched else 0) | (LATEST if latest else 0), old if latest else 0)
        if ev is None:
            return
        if switched and self.route_handsets:
            self._hs_ops.append(Switch(h, m, d, SWITCHED | (LATEST if latest else 0), old if latest else 0))
        if latest:
            a["sw_h"][row], a["sw_d"][row] = h, d
        get = self._row.get
        for x, dx in ev:
            rx = get(x)
            if rx is not None:
                self._dual_evidence(rx, dx)

    def _dual_evidence(self, x: int, d: int) -> None:
        a = self._a
        dd = int(a["dual_day"][x])
        if d > dd:
            a["dual_prev"][x] = dd
            a["dual_day"][x] = d
        elif d < dd:
            a["dual_prev"][x] = max(int(a["dual_prev"][x]), d)
        a["dual_n"][x] = max(int(a["dual_n"][x]), 1)
        a["dirty"][x] = 1
        self._extra.add(x)

    def apply_switches(self, switches: Iterable[Switch | tuple]) -> np.ndarray:
        """Other engines' switches (:class:`Switch`), met with this engine's numbers: dual-SIM
        evidence for those that used the handset within the window, and the switch kept for
        their later uses. Idempotent; a switch of a number this engine holds is its own (found
        at once). Returns the rows changed (persist them)."""
        rows = []
        get = self._row.get
        a = self._a
        hx = self._handsets
        for h, m, d, flags, old in switches:
            if m in self._row:
                continue
            for x, dx in hx.remote_switch(int(h), m, int(d), int(flags), int(old)):
                r = get(x)
                if r is None:
                    continue
                before = (int(a["dual_day"][r]), int(a["dual_prev"][r]), int(a["dual_n"][r]))
                self._dual_evidence(r, int(dx))
                if (int(a["dual_day"][r]), int(a["dual_prev"][r]), int(a["dual_n"][r])) != before:
                    rows.append(r)
                    self._count("handset_evidence_remote")
        self._extra.clear()
        return np.unique(np.array(rows, dtype=np.int64)) if rows else NO_ROWS

    def add_switch(self, h: int, m: str, d: int) -> None:
        """Another engine's number's latest switch, restored (the service persists them)."""
        if m not in self._row:
            self._handsets.switch(m, int(h), int(d))

    def take_handset_ops(self) -> list:
        """The switches indexed since the last call (route_handsets), for the other engines."""
        ops, self._hs_ops = self._hs_ops, []
        return ops

    # ------------------------------------------------------------------ features
    def _features(self, rows: np.ndarray, D: int) -> dict[str, np.ndarray]:
        cfg = self.config
        a = self._a
        R = self.R
        nb, nr = cfg.baseline_days, cfg.recent_days
        days = np.arange(D - nb - nr, D, dtype=np.int64)  # baseline then recent, complete days
        slots = days % R
        # holidays and void days (feed outages) are left out of the traffic windows alike
        hol = np.isin(days, self._hol) | np.isin(days, self._void(D))
        ix = (rows[:, None], slots[None, :])
        valid = a["stamp"][ix] == days[None, :]
        use = valid & ~hol[None, :]

        def win(name):
            return np.where(valid, a[name][ix].astype(np.int64), 0)

        calls = win("calls_out") + win("calls_in")
        secs = win("sec_out") + win("sec_in")
        sms = win("sms_out") + win("sms_in")
        contacts = np.where(valid, _popcount(a["bits"][ix]), 0)
        active = (calls + sms) > 0
        B, W = slice(0, nb), slice(nb, nb + nr)
        nbd = int((~hol[B]).sum())
        nrd = int((~hol[W]).sum())
        bA = (active & use)[:, B].sum(1)
        rA = (active & use)[:, W].sum(1)
        ring_active = active[:, :].sum(1)
        recent_active_all = active[:, W].sum(1)
        f: dict[str, np.ndarray] = {}
        # traffic drop
        metrics = ((secs, 600), (calls, 10), (sms, 10), (contacts, 10))
        tot, cnt = _traffic_drop(use, metrics, B, W, nbd, nrd)
        elig = (
            (bA >= cfg.drop_min_baseline_active_days) & (rA >= cfg.drop_min_recent_active_days) & (nrd >= 3) & (cnt > 0)
        )
        f["drop"] = np.where(elig, tot / np.maximum(cnt, 1), 0.0)
        f["drop_elig"] = elig
        # confirmation: the week before the recent one against the 21 days before it ("older");
        # trend: the last two weeks (and the recent week alone) against the same older days, so
        # that a slow decay is not hidden by a baseline that is already decaying
        B2, P, PW = slice(0, nb - nr), slice(nb - nr, nb), slice(nb - nr, nb + nr)
        nb2d = int((~hol[B2]).sum())

        def rel_drop(sl: slice) -> np.ndarray:
            tot2, cnt2 = _traffic_drop(use, metrics, B2, sl, nb2d, int((~hol[sl]).sum()))
            return np.where(cnt2 > 0, tot2 / np.maximum(cnt2, 1), 0.0)

        f["drop_prior"] = rel_drop(P)
        f["trend"] = np.where(elig, rel_drop(PW), 0.0)
        f["trend_recent"] = np.where(elig, rel_drop(W), 0.0)
        # the last drop_tail_days days: a churner's traffic is lowest at the end of the window, a
        # subscriber back from a holiday is not down there any more
        f["drop_tail"] = np.where(elig, rel_drop(slice(nb + nr - cfg.drop_tail_days, nb + nr)), 0.0)
        # the drops' significance (drop_min_z): the events of the recent week, and of the last two
        # weeks, against the count their baseline expects (a low-traffic subscriber's week is noisy)
        # (computed only when read: off by default)
        if cfg.drop_min_z > 0 or self.all_features:
            ev_used = np.where(use, calls + sms, 0)
            f["drop_z"] = _shortfall_z(ev_used, B, W, nbd, nrd)
            f["trend_z"] = _shortfall_z(ev_used, B2, PW, nb2d, int((~hol[PW]).sum()))
        else:
            f["drop_z"] = f["trend_z"] = np.zeros(len(rows))
        # hotline: dials in the last hotline_days complete days (a dial trips at once, on its own:
        # Engine.immediate; a decision reads it from the day after)
        hd = np.arange(D - cfg.hotline_days, D, dtype=np.int64)
        hv = a["stamp"][rows][:, hd % R] == hd[None, :]
        f["hotline"] = np.where(hv, a["hot_n"][rows][:, hd % R].astype(np.int64), 0).sum(1)
        # contact circle
        cm = a["c_mask"][rows]
        cl = a["c_last"][rows].astype(np.int64)
        occ = a["c_cnt"][rows] > 0
        bmask = window_mask(cl, D - nb - nr, D - nr - 1)
        rmask = window_mask(cl, D - nr, D - 1)
        bd = np.where(occ, _popcount(cm & bmask), 0)
        rd = np.where(occ, _popcount(cm & rmask), 0)
        comp = a["c_comp"][rows].astype(bool)
        mem = bd >= cfg.circle_min_days
        nmem = mem.sum(1)
        wsum = np.where(mem, bd, 0).sum(1)
        ero = np.where(mem & (rd == 0), bd, 0).sum(1)
        # erosion is about an active subscriber dropping peers; a silent one is the silence signal's case
        ero_elig = (nmem >= cfg.circle_min_members) & (recent_active_all >= cfg.drop_min_recent_active_days)
        f["erosion"] = np.where(ero_elig, ero / np.maximum(wsum, 1), 0.0)
        f["erosion_elig"] = ero_elig
        # long memory (drift_threshold > 0): the circle's contact days of the last 14 days against days
        # 36-63 before, per day, for subscribers seen since then and still active
        f["drift"] = np.zeros(len(rows))
        if cfg.drift_threshold > 0 or self.all_features:
            rdd = np.where(occ, _popcount(cm & window_mask(cl, D - DRIFT_RECENT, D - 1)), 0).sum(1)
            old = cfg.drift_old_days
            odd = np.where(occ, _popcount(cm & window_mask(cl, D - old, D - old - 1 + DRIFT_OLD)), 0).sum(1)
            d_elig = (
                (a["first_day"][rows].astype(np.int64) <= D - old)
                & (odd >= cfg.drift_min_weight)
                & (recent_active_all >= cfg.drop_min_recent_active_days)
            )
            rate = (rdd / DRIFT_RECENT) / np.maximum(odd / DRIFT_OLD, 1e-9)
            f["drift"] = np.where(d_elig, 1.0 - rate, 0.0)
        rsum = rd.sum(1)
        bsum = bd.sum(1)
        rshare = np.where(rsum > 0, np.where(comp, rd, 0).sum(1) / np.maximum(rsum, 1), 0.0)
        bshare = np.where(bsum > 0, np.where(comp, bd, 0).sum(1) / np.maximum(bsum, 1), 0.0)
        comp_elig = ero_elig & (rsum >= cfg.competitor_min_weight) & (bsum >= cfg.competitor_min_weight)
        f["comp_rise"] = np.where(comp_elig, rshare - bshare, 0.0)
        f["comp_share"] = rshare
        f["new_share"] = np.where(rsum > 0, np.where(bd == 0, rd, 0).sum(1) / np.maximum(rsum, 1), 0.0)
        f["circle_size"] = (occ & ((bd + rd) >= cfg.circle_min_days)).sum(1)
        # silence
        la = self._active_before(rows, D)
        f["silence"] = self._silent_days(la, D)
        f["silence_elig"] = (la != NODAY) & (ring_active >= cfg.silence_min_active_days)
        f["recent_active"] = recent_active_all
        # recharge lapse (prepaid): overdue against the usual interval, at the start of day D
        f.update(self._lapse(rows, D))
        # dual SIM (evidence of the days before D)
        dd = self._dual_before(rows, D)
        f["dual"] = np.where((dd != NODAY) & (dd >= D - cfg.dual_sim_days + 1), a["dual_n"][rows].astype(np.int64), 0)
        f.update(self._shadow_features(rows, D))
        # season: a holiday within the recent window or the week before
        f["in_season"] = np.full(len(rows), bool(np.isin(np.arange(D - 2 * nr, D + 1), self._hol).any()))
        return f

    def _shadow_features(self, rows: np.ndarray, D: int) -> dict[str, np.ndarray]:
        """The second SIM: confirmed shadow evidence within ``dual_sim_days``, and the timing: the
        subscriber's contact days with the members the shadow reaches, over the days since it
        appeared (the last 2 * recent_days at most, >= 3 days), down >= shadow_min_decline against
        the baseline_days before it appeared (>= 7 days)."""
        cfg = self.config
        a = self._a
        n = len(rows)
        sp = a["sh_peer"][rows]
        if not cfg.shadow_enabled:
            z = np.zeros(n)
            return {"shadow": np.zeros(n, dtype=bool), "shadow_j": z, "shadow_decline": z, "shadow_peer": sp}
        sd = a["sh_day"][rows].astype(np.int64)
        sf = a["sh_first"][rows].astype(np.int64)
        valid = (sp != 0) & (sd != NODAY) & (sd >= D - cfg.dual_sim_days + 1)
        sel = ((a["sh_mask"][rows].astype(np.int64)[:, None] >> np.arange(K)[None, :]) & 1) == 1
        fd = a["first_day"][rows].astype(np.int64)
        lo_b = np.maximum(sf - cfg.baseline_days, fd)
        hi_b = sf - 1
        lo_r = np.maximum(sf, D - 2 * cfg.recent_days)
        hi_r = np.full(n, D - 1, dtype=np.int64)
        Lb = hi_b - lo_b + 1
        Lr = hi_r - lo_r + 1
        cm = a["c_mask"][rows]
        cl = a["c_last"][rows].astype(np.int64)
        bc = np.where(sel, _popcount(cm & window_mask(cl, lo_b[:, None], hi_b[:, None])), 0).sum(1)
        rc = np.where(sel, _popcount(cm & window_mask(cl, lo_r[:, None], hi_r[:, None])), 0).sum(1)
        ok = valid & (Lr >= 3) & (Lb >= 7) & (bc > 0)
        rate_b = bc / np.maximum(Lb, 1)
        rate_r = rc / np.maximum(Lr, 1)
        decline = np.where(ok, np.clip(1.0 - rate_r / np.where(ok, rate_b, 1.0), 0.0, 1.0), 0.0)
        return {
            "shadow": ok & (decline >= cfg.shadow_min_decline),
            "shadow_j": a["sh_j"][rows] / 1000.0,
            "shadow_decline": decline,
            "shadow_peer": sp,
        }

    def _shadow_publish(self, rows: np.ndarray, f: dict, D: int) -> None:
        """Subscribers whose traffic or circle is down >= shadow_publish_drop publish their strong
        circle's LSH band keys (once a day at most; again after shadow_refresh_days or when the
        circle changed), so that a shadow number reaching that circle meets them in the bands."""
        cfg = self.config
        a = self._a
        nb, nr = cfg.baseline_days, cfg.recent_days
        pub = a["sh_pub"][rows].astype(np.int64)
        want = (np.maximum(f["drop"], f["erosion"]) >= cfg.shadow_publish_drop) & (pub < D)
        if not want.any():
            return
        rr = rows[want]
        p = pub[want]
        cm = a["c_mask"][rr]
        cl = a["c_last"][rr].astype(np.int64)
        occ = a["c_cnt"][rr] > 0
        bd = np.where(occ, _popcount(cm & window_mask(cl, D - nb - nr, D - nr - 1)), 0)
        peers = a["c_peer"][rr]
        strong = occ & (a["c_comp"][rr] == 0) & (bd >= cfg.circle_min_days) & (peers != 0)
        nat = _sh.national(peers.reshape(-1), cfg.country_code).reshape(peers.shape)
        h = np.bitwise_xor.reduce(np.where(strong, _sh.mix(nat), np.uint64(0)), axis=1)
        due = (strong.sum(1) >= cfg.circle_min_members) & ((D - p >= cfg.shadow_refresh_days) | (h != a["sh_hash"][rr]))
        di = np.flatnonzero(due)
        if len(di):
            # each strong circle's signature (the min over its members' hashes), all at once
            H = _sh.member_hashes(nat[di].reshape(-1)).reshape(len(di), nat.shape[1], _sh.M)
            sigs = _sh.signatures(H, strong[di])
            for r, keys in zip(rr[di].tolist(), _sh.band_keys_many(sigs), strict=True):
                self.shadow_publications.append({"s": self._msisdn[int(r)], "bands": keys, "day": int(D)})
        d = rr[due]
        a["sh_pub"][d] = D
        a["sh_hash"][d] = h[due]

    def take_shadow_publications(self) -> list[dict]:
        """The circle publications decided since the last call (the caller routes them to the bands)."""
        out, self.shadow_publications = self.shadow_publications, []
        return out

    def apply_shadow(self, evidence: Iterable[dict]) -> np.ndarray:
        """Stage 3 of the second-SIM join: candidate pairs ``{"s", "x", "sig", "first", "last",
        "day"}`` from the bands, confirmed against S's own state. X must be new (first seen >=
        shadow_warmup_days after S, within shadow_new_days of the evidence) and reach S's weighted
        circle as it was before X appeared: >= shadow_min_overlap strong members, carrying >=
        shadow_min_weight_share of its contact-day weight, MinHash Jaccard >= shadow_min_jaccard.
        The best confirmed X is kept (the same X refreshes its day). Returns the changed rows.

        The measures of every pair are computed together (they read the circle, which this does
        not change); only the pairs that pass are applied one by one, in order (the kept X of a
        subscriber depends on the pairs before)."""
        cfg = self.config
        a = self._a
        evs = list(evidence)
        if not evs:
            return np.empty(0, dtype=np.int64)
        rows = self.rows_of([str(ev["s"]) for ev in evs])
        x = np.array([int(ev["x"]) for ev in evs], dtype=np.uint64)
        first = np.array([int(ev["first"]) for ev in evs], dtype=np.int64)
        day = np.array([int(ev["day"]) for ev in evs], dtype=np.int64)
        sigs = np.array([ev["sig"] for ev in evs], dtype=np.uint32).reshape(len(evs), _sh.M)
        ok = rows >= 0
        fd = np.where(ok, a["first_day"][np.maximum(rows, 0)].astype(np.int64), 0)
        ok &= (first >= fd + cfg.shadow_warmup_days) & (first >= day - cfg.shadow_new_days)
        sel = np.flatnonzero(ok)
        if not len(sel):
            return np.empty(0, dtype=np.int64)
        R, fs = rows[sel], first[sel, None]
        occ = a["c_cnt"][R] > 0
        wmask = window_mask(a["c_last"][R].astype(np.int64), fs - cfg.baseline_days, fs - 1)
        w = np.where(occ, _popcount(a["c_mask"][R] & wmask), 0)
        peers = a["c_peer"][R]
        strong = occ & (a["c_comp"][R] == 0) & (w >= cfg.circle_min_days) & (peers != 0)
        enough = strong.sum(1) >= cfg.shadow_min_overlap
        H = _sh.member_hashes(_sh.national(peers.reshape(-1), cfg.country_code)).reshape(*peers.shape, _sh.M)
        sig = sigs[sel]
        hit = (H == sig[:, None, :]) & strong[:, :, None]
        own = _sh.national(np.array([int(m) for m in self.msisdns(R)], dtype=np.uint64), cfg.country_code)
        itself = (x[sel] == own) | (_sh.member_hashes(own) == sig).any(1)  # S's own number, or one S talks to
        matched = hit.any(2)
        n_matched = matched.sum(1)
        J = _sh.jaccard_many(_sh.signatures(H, strong), sig)  # S's circle's signature against X's
        contain = hit.any(1).mean(1)  # share of X's contacts inside S's circle
        ws = np.where(strong, w, 0)
        share = np.where(matched, ws, 0).sum(1) / np.maximum(ws.sum(1), 1)
        measured = enough & ~itself
        if self._shadow_log is not None:
            for i in np.flatnonzero(measured).tolist():
                e = int(sel[i])
                self._shadow_log.append(
                    (
                        str(evs[e]["s"]),
                        int(x[e]),
                        float(J[i]),
                        float(contain[i]),
                        float(share[i]),
                        int(n_matched[i]),
                        int(day[e]),
                    )
                )
        passed = (
            measured
            & (J >= cfg.shadow_min_jaccard)
            & (contain >= cfg.shadow_min_containment)
            & (n_matched >= cfg.shadow_min_overlap)
            & (share >= cfg.shadow_min_weight_share)
        )
        changed: list[int] = []
        for i in np.flatnonzero(passed).tolist():
            e = int(sel[i])
            r, xi, fi, D = int(R[i]), int(x[e]), int(first[e]), int(day[e])
            jm = int(round(float(J[i]) * 1000))
            cur, cur_day = int(a["sh_peer"][r]), int(a["sh_day"][r])
            live = cur != 0 and cur_day >= D - cfg.dual_sim_days + 1
            if not (cur == xi or not live or jm > int(a["sh_j"][r])):
                continue
            mask = sum(1 << int(b) for b in np.flatnonzero(matched[i]).tolist())
            new = (xi, fi, max(D, cur_day) if cur == xi else D, mask, jm)
            old = (cur, int(a["sh_first"][r]), cur_day, int(a["sh_mask"][r]), int(a["sh_j"][r]))
            if new != old:
                a["sh_peer"][r], a["sh_first"][r], a["sh_day"][r], a["sh_mask"][r], a["sh_j"][r] = new
                a["dirty"][r] = 1
                changed.append(r)
        return np.unique(np.array(changed, dtype=np.int64))

    def _active_before(self, rows: np.ndarray, D: int) -> np.ndarray:
        """The last day before D with a call or SMS (NODAY: none), as of the start of day D: a
        decision made after events of day D arrived reads the same as one made before. From the
        ring when ``last_active`` is already D or later; when the ring holds no active day before
        D, the last one is older than the ring (or there is none, before the first event)."""
        a = self._a
        la = a["last_active"][rows].astype(np.int64)
        fut = la >= D
        if fut.any():
            rr = rows[fut]
            st = a["stamp"][rr].astype(np.int64)
            act = (a["calls_out"][rr].astype(np.int64) + a["calls_in"][rr] + a["sms_out"][rr] + a["sms_in"][rr]) > 0
            best = np.where((st < D) & act, st, NODAY).max(axis=1)
            never = a["first_day"][rr].astype(np.int64) >= D
            la[fut] = np.where(best != NODAY, best, np.where(never, NODAY, D - self.R - 1))
        return la

    def _dual_before(self, rows: np.ndarray, D: int) -> np.ndarray:
        """The latest dual-SIM evidence day before D (NODAY: none)."""
        dd = self._a["dual_day"][rows].astype(np.int64)
        dp = self._a["dual_prev"][rows].astype(np.int64)
        return np.where(dd < D, dd, np.where(dp < D, dp, NODAY))

    def _silent_days(self, la: np.ndarray, D: int) -> np.ndarray:
        """Days since ``la`` up to D - 1, less the holidays and void days (feed outages) among them."""
        s = np.maximum(D - 1 - la, 0)
        void = self._void(D)
        skip = np.union1d(self._hol, void) if len(void) else self._hol
        if len(skip):
            lo = np.searchsorted(skip, np.maximum(la, D - 4000), side="right")
            hi = np.searchsorted(skip, D - 1, side="right")
            s = np.maximum(s - np.maximum(hi - lo, 0), 0)
        return np.where(la == NODAY, 0, s)

    def _day_totals(self, days: range) -> list[tuple[int, int, int]]:
        """(calls, SMS, recharges) of each of ``days`` (fewer than ``ring_days``) over every row whose ring
        holds that day. Cached: a day's totals are read again only after events of it were applied
        (or rows came or went); a few missing days are read column by column, more in one pass
        over the rings, in blocks of rows."""
        cache = self._tot_cache
        need = [d for d in days if d not in cache]
        if need:
            a, n, R = self._a, self._n, self.R
            kinds = (("calls_out", "calls_in"), ("sms_out", "sms_in"), ("rch_n",))
            if len(need) < 16:  # ~20 ms a day per million rows (strided), the pass ~0.35 s
                for d in need:
                    s = d % R
                    on = a["stamp"][:n, s] == d
                    cache[d] = tuple(
                        sum(int(np.where(on, a[nm][:n, s], 0).sum(dtype=np.int64)) for nm in k) for k in kinds
                    )
            else:
                tgt = np.full(R, -1, dtype=np.int64)  # the day wanted from each slot (-1: none)
                tgt[np.array(need, dtype=np.int64) % R] = need
                tot = np.zeros((3, R), dtype=np.int64)
                for lo in range(0, n, 1 << 16):
                    hi = min(n, lo + (1 << 16))
                    on = a["stamp"][lo:hi] == tgt[None, :]
                    for j, k in enumerate(kinds):
                        for nm in k:
                            tot[j] += np.where(on, a[nm][lo:hi], 0).sum(axis=0, dtype=np.int64)
                for d in need:
                    cache[d] = (int(tot[0, d % R]), int(tot[1, d % R]), int(tot[2, d % R]))
        return [cache[d] for d in days]

    def void_days(self, D: int) -> list[int]:
        """The void days (feed outages, ``void_fraction``) the decision of day ``D`` reads."""
        return self._void(D).tolist()

    def _void(self, D: int) -> np.ndarray:
        return self._voids(D)[0]

    def _voids(self, D: int, keep: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The void days (feed outages) among the complete days a decision of day ``D`` reads
        (``void_fraction``): a day whose calls, or whose SMS, over every row are below
        ``void_fraction`` of the median of the 7 days before it in the window that were normal
        for that kind, those reaching ``void_min_events`` (the voice and the SMS feeds can fail
        apart: the day is left out whole); and the days whose recharges fell so (those days
        reaching ``void_min_recharges``): recharges lost. Computed once for a decided day
        (``keep``: :meth:`decide_candidates`) and read by every part of its decision, so late
        events between the parts change nothing."""
        got = None if keep else self._void_memo.get(D)
        if got is not None:
            return got
        cfg = self.config
        out: list[int] = []
        lost: list[int] = []
        if cfg.void_fraction > 0 and self._n:
            normal: tuple[list[int], ...] = ([], [], [])  # per kind: the totals of its normal days
            mins = (cfg.void_min_events, cfg.void_min_events, cfg.void_min_recharges)
            window = range(D - cfg.baseline_days - cfg.recent_days, D)
            for d, tots in zip(window, self._day_totals(window), strict=True):
                low = []
                for t, seen, mn in zip(tots, normal, mins, strict=True):
                    last = sorted(seen[-7:])
                    ref = last[len(last) // 2] if last else 0  # a median: one busy day is no standard
                    low.append(ref >= mn and t < cfg.void_fraction * ref)
                    if not low[-1]:
                        seen.append(t)
                if low[0] or low[1]:
                    out.append(d)
                if low[2]:
                    lost.append(d)
        res = (np.array(out, dtype=np.int64), np.array(lost, dtype=np.int64))
        if keep:
            for k in [k for k in self._void_memo if k < D - 2]:
                del self._void_memo[k]
            self._void_memo[D] = res
        return res

    def _lapse(self, rows: np.ndarray, D: int) -> dict[str, np.ndarray]:
        """Recharge lapse at the start of day D, from the recharges before D (those of day D or
        later that already arrived are taken out: the ring's counts and cents, ``rch_prev`` for the
        last). The usual interval is the subscriber's own mean gap, from ``recharge_min_count``
        recharges on; below that, a prior cadence (``recharge_prior_*``): the amount's worth of the
        monthly ARPU, or ``recharge_prior_days``."""
        cfg = self.config
        a = self._a
        ds = cfg.day_start_s(D)
        st = a["stamp"][rows]
        later = st >= D
        n = a["rch_count"][rows].astype(np.int64) - np.where(later, a["rch_n"][rows], 0).sum(axis=1).astype(np.int64)
        cents = a["rch_sum"][rows] - np.where(later, a["rch_c"][rows], 0).sum(axis=1).astype(np.int64)
        first = a["rch_first"][rows]
        rl = a["rch_last"][rows]
        rp = a["rch_prev"][rows]
        last = np.where(rl < ds, rl, np.where(rp < ds, rp, -math.inf))
        prepaid = a["plan"][rows] == 1
        has = last > -math.inf
        own_ok = prepaid & (n >= cfg.recharge_min_count) & has
        g = np.maximum(n - 1, 1)
        own = np.where(own_ok, (np.where(own_ok, last, 0.0) - np.where(own_ok, first, 0.0)) / g, 0.0)
        interval = own
        ref = np.where(has, last, 0.0)
        ok = own_ok
        prior_on = cfg.recharge_prior_days > 0
        if prior_on:
            prior = np.full(len(rows), cfg.recharge_prior_days * 86400.0)
            if cfg.recharge_prior_from_amount:
                arpu = a["arpu_c"][rows].astype(np.float64)
                amt = cents / np.maximum(n, 1)
                use = (arpu > 0) & (n >= 1) & (amt > 0)
                days = np.clip(
                    30.0 * amt / np.where(use, arpu, 1.0), cfg.recharge_prior_min_days, cfg.recharge_prior_max_days
                )
                prior = np.where(use, days * 86400.0, prior)
            k = cfg.recharge_prior_weight
            if k > 0:
                gf = g.astype(np.float64)
                interval = np.where(own_ok, (gf * own + k * prior) / (gf + k), interval)
            few = prepaid & ~own_ok & (n >= 1) & has
            interval = np.where(few, prior, interval)
            ok = own_ok | few
            if cfg.recharge_prior_unseen:
                fd = a["first_day"][rows].astype(np.int64)
                none = prepaid & (n == 0) & (fd < D)
                interval = np.where(none, prior, interval)
                ref = np.where(none, cfg.day_start_s(0) + np.where(none, fd, 0) * 86400.0, ref)
                ok |= none
        since = ds - np.where(ok, ref, 0.0)
        ok &= interval > 0
        ratio = np.where(ok, since / np.where(ok, interval, 1.0), 0.0)
        # one gap (two recharges) is a rough estimate of the interval: twice the tolerance; a prior
        # cadence has its own (recharge_prior_factor / _overdue_days)
        one = n <= 2
        fac = np.where(one, 1.0 + 2.0 * (cfg.recharge_lapse_factor - 1.0), cfg.recharge_lapse_factor)
        over = np.where(one, 2.0 * cfg.recharge_min_overdue_days, cfg.recharge_min_overdue_days)
        if prior_on:
            fac = np.where(own_ok, fac, cfg.recharge_prior_factor)
            over = np.where(own_ok, over, cfg.recharge_prior_overdue_days)
            if cfg.recharge_prior_unseen:  # no recharge since first seen: its own factor, no margin
                fac = np.where(none, cfg.recharge_prior_unseen_factor, fac)
                over = np.where(none, 0.0, over)
        over = over * 86400.0
        lost = self._voids(D)[1]  # the days whose recharges were lost
        if len(lost):
            # a recharge expected during the latest feed outage (within the rule's own margin,
            # ``over``, of it) may have been made, and lost, there: the interval restarts at its
            # end, for a subscriber whose last recharge came before it and who was not overdue
            # when it began (an outage never brings a lapse earlier)
            gap = np.flatnonzero(np.diff(lost) > 1)
            vf = int(lost[gap[-1] + 1]) if len(gap) else int(lost[0])
            vs, ve = cfg.day_start_s(vf), cfg.day_start_s(int(lost[-1]) + 1)
            sf = vs - np.where(ok, ref, 0.0)
            rf = np.where(ok, sf / np.where(ok, interval, 1.0), 0.0)
            exp = np.where(ok, ref + interval, 0.0)
            near = (exp >= vs - over) & (exp <= ve + over)
            due = ok & near & (ref < vs) & ~((rf >= fac) & (sf - interval >= over))
            if due.any():
                since = np.where(due, ds - ve, since)
                ratio = np.where(due, since / np.where(ok, interval, 1.0), ratio)
        trip = ok & (ratio >= fac) & (since - interval >= over)
        return {"lapse": ratio, "lapse_trip": trip, "rch_interval_s": np.where(ok, interval, 0.0)}

    def _decide_arrays(self, rows: np.ndarray, f: dict, D: int) -> dict[str, np.ndarray]:
        """Signals -> tripped flags, contributions, score, raw phase, reason code, tier code."""
        cfg = self.config
        a = self._a
        tail = f["drop_tail"] >= cfg.drop_tail_threshold
        off = cfg.drop_min_z <= 0
        t_drop7 = (
            f["drop_elig"]
            & (f["drop"] >= cfg.drop_threshold)
            & (f["drop_prior"] >= cfg.drop_confirm_threshold)
            & tail
            & (off | (f["drop_z"] >= cfg.drop_min_z))
        )
        # a slow decay: the last two weeks down by trend_threshold vs the 21 days before, each week
        # down by trend_week_threshold (a short holiday fills one week, not both)
        t_trend = (
            f["drop_elig"]
            & (f["trend"] >= cfg.trend_threshold)
            & (f["drop_prior"] >= cfg.trend_week_threshold)
            & (f["trend_recent"] >= cfg.trend_week_threshold)
            & tail
            & (off | (f["trend_z"] >= cfg.drop_min_z))
        )
        t_drop = t_drop7 | t_trend
        drop_v = np.where(t_trend, np.maximum(f["drop"], f["trend"]), f["drop"])
        t_hot = f["hotline"] >= cfg.hotline_min_calls
        t_dual = (f["dual"] >= 1) | f["shadow"]
        t_ero35 = f["erosion_elig"] & (f["erosion"] >= cfg.erosion_threshold)
        t_drift = (f["drift"] >= cfg.drift_threshold) & (cfg.drift_threshold > 0)
        t_ero = t_ero35 | t_drift
        ero_v = np.maximum(np.where(t_ero35, f["erosion"], 0.0), np.where(t_drift, f["drift"], 0.0))
        ero_v = np.where(t_ero, ero_v, f["erosion"])
        t_comp = f["comp_rise"] >= cfg.competitor_rise_threshold
        t_lapse = f["lapse_trip"]
        if cfg.lapse_decline_factor > 0:  # overdue, and the traffic going down with it
            t_lapse = t_lapse | (
                (f["rch_interval_s"] > 0)
                & (f["lapse"] >= cfg.lapse_decline_factor)
                & (f["drop"] >= cfg.lapse_decline_drop)
                & (f["drop_tail"] >= cfg.lapse_decline_tail)
            )
        t_sil = f["silence_elig"] & (f["silence"] >= cfg.silence_days)
        span = cfg.churned_silence_days - cfg.silence_days
        c_sil = cfg.w_silence + 0.5 * np.minimum(1.0, (f["silence"] - cfg.silence_days) / span)
        contribs = (
            # traffic_drop and contact_erosion both describe fading use: one term, the larger
            np.maximum(np.where(t_drop, cfg.w_drop * drop_v, 0.0), np.where(t_ero, cfg.w_erosion * ero_v, 0.0)),
            np.where(t_hot, cfg.w_hotline, 0.0),
            np.where(t_dual, cfg.w_dual_sim, 0.0),
            np.where(t_comp, cfg.w_competitor_contacts, 0.0),
            np.where(t_lapse, cfg.w_recharge_lapse, 0.0),
            np.where(t_sil, np.minimum(c_sil, 1.0), 0.0),
        )
        keep = np.ones(len(rows))
        for c in contribs:
            keep = keep * (1.0 - c)
        score = 1.0 - keep
        compet = t_hot | t_dual | t_comp
        # a deep drop is alarm-level when the week before was already down by drop_threshold
        deep = (
            t_drop7
            & (f["drop"] >= cfg.deep_drop_threshold)
            & (f["drop_prior"] >= cfg.drop_threshold)
            & (f["trend"] >= cfg.deep_trend_threshold)
        )
        alarm_level = t_hot | (t_dual & cfg.dual_sim_alarm_level) | deep
        raw = np.where(score >= cfg.warn_score, 1, 0)
        raw = np.where((score >= cfg.alarm_score) | alarm_level, 2, raw)
        raw = np.where(t_sil & (f["silence"] >= cfg.churned_silence_days), 3, raw)
        quiet = t_drop | t_ero | t_sil | t_lapse
        seasonal = (
            ~compet
            & quiet
            & (
                f["in_season"]
                | ((f["new_share"] >= cfg.seasonal_new_share) & (f["recent_active"] >= 3) & (t_drop | t_ero))
            )
        )
        raw = np.where(seasonal, np.minimum(raw, 1), raw)
        prepaid = a["plan"][rows] == 1
        reason = np.where(compet, 0, np.where(seasonal, 1, np.where(t_lapse & prepaid, 3, np.where(quiet, 2, 4))))
        arpu = a["arpu_c"][rows].astype(np.int64)
        arpu = np.where(arpu < 0, 0, arpu)
        kg = a["key_group"][rows] == 1
        cs = f["circle_size"]
        act = a["activated"][rows].astype(np.int64)
        loyal = (act >= 0) & (D - act >= cfg.loyal_tenure_days)
        high = (
            kg
            | (arpu >= round(cfg.tier_high_arpu * 100))
            | ((arpu >= round(cfg.tier_mid_arpu * 100)) & (cs >= cfg.influence_high))
        )
        mid = (arpu >= round(cfg.tier_mid_arpu * 100)) | (cs >= cfg.influence_mid) | loyal
        tier = np.where(high, 0, np.where(mid, 1, 2))
        trips = (t_drop, t_hot, t_dual, t_ero, t_comp, t_lapse, t_sil)
        return {
            "score": score,
            "raw": raw,
            "reason": reason,
            "tier": tier,
            "trips": trips,
            "drop_v": drop_v,
            "ero_v": ero_v,
        }

    @classmethod
    def decide_recorded(cls, config: EngineConfig, f: dict, row_arrays: dict) -> dict[str, np.ndarray]:
        """The decision under ``config`` on features recorded from earlier decisions (``churnwatch
        tune``): ``f`` as :meth:`_features` returns it and ``row_arrays`` the profile columns the
        decision reads (plan, arpu_c, key_group, activated), for the same rows; the value tier's
        tenure is not meaningful (no day)."""
        n = len(f["drop"])
        view = SimpleNamespace(config=config, _a=row_arrays)
        return cls._decide_arrays(view, np.arange(n, dtype=np.int64), f, 0)

    # ------------------------------------------------------------------ lifecycle
    def _evaluate_rows(self, rows: np.ndarray, D: int, now_s: float) -> list[dict]:
        cfg = self.config
        a = self._a
        if len(rows) == 0:
            return []
        # an immediate alarm (a care-line dial before D, in this episode) is the alarm phase
        # already announced: the lifecycle takes it over without a second record
        im = a["imm_day"][rows].astype(np.int64)
        merge = (im != NODAY) & (im < D) & (im >= a["ep_day"][rows]) & (a["phase"][rows] < 2)
        if merge.any():
            m = rows[merge]
            a["phase"][m] = 2
            a["last_emit_day"][m] = im[merge]
            a["last_emit_sev"][m] = 2
            a["emitted"][m] = 1
        f = self._features(rows, D)
        if cfg.shadow_enabled:
            self._shadow_publish(rows, f, D)
        dec = self._decide_arrays(rows, f, D)
        raw = dec["raw"]
        cur = a["phase"][rows].astype(np.int64)
        led = a["last_emit_day"][rows].astype(np.int64)
        les = a["last_emit_sev"][rows].astype(np.int64)
        esc = raw > cur
        cool = (led != NODAY) & (D - led < cfg.cooldown_days) & (raw <= les)
        emit_esc = esc & ~cool
        # hysteresis: recovery needs the signals clear on recover_clear_days consecutive days
        # (a subscriber not healthy is evaluated by every daily sweep), so one good day or week
        # inside a falling trend does not end the episode
        clear = (raw == 0) & (cur > 0)
        cd = a["clear_day"][rows].astype(np.int64)
        cd = np.where(clear, np.where(cd == NODAY, D, cd), NODAY)
        rec = clear & (D - cd + 1 >= cfg.recover_clear_days) & (f["recent_active"] >= cfg.recover_min_active_days)
        a["clear_day"][rows] = np.where(rec, NODAY, cd)
        emit_rec = rec & (a["emitted"][rows] == 1)
        a["dirty"][rows] = 0
        a["eval_day"][rows] = D
        out: list[dict] = []
        idx = np.flatnonzero(emit_esc | emit_rec)
        if len(idx):
            emitted_at = self._now()
            for i in idx.tolist():
                r = int(rows[i])
                if emit_rec[i]:
                    out.append(self._record(r, "recovered", i, f, dec, D, now_s, emitted_at, int(cur[i])))
                else:
                    out.append(self._record(r, PHASE_NAMES[int(raw[i])], i, f, dec, D, now_s, emitted_at, int(cur[i])))
        out.sort(key=lambda x: x["msisdn"])
        e = rows[esc]
        a["phase"][e] = raw[esc]
        ee = rows[emit_esc]
        a["last_emit_day"][ee] = D
        a["last_emit_sev"][ee] = raw[emit_esc]
        a["emitted"][ee] = 1
        rr = rows[rec]
        a["phase"][rr] = 0
        a["episode"][rr] += 1
        a["emitted"][rr] = 0
        a["ep_day"][rr] = D
        return out

    def _signal_list(self, i: int, f: dict, dec: dict, only_tripped: bool) -> list[dict]:
        cfg = self.config
        vals = (
            (float(dec["drop_v"][i]), cfg.drop_threshold),
            (int(f["hotline"][i]), cfg.hotline_min_calls),
            (int(f["dual"][i]) + int(f["shadow"][i]), 1),
            (float(dec["ero_v"][i]), cfg.erosion_threshold),
            (float(f["comp_rise"][i]), cfg.competitor_rise_threshold),
            (float(f["lapse"][i]), cfg.recharge_lapse_factor if f["lapse_trip"][i] else cfg.lapse_decline_threshold()),
            (int(f["silence"][i]), cfg.silence_days),
        )
        out = []
        for name, (v, thr), t in zip(SIGNAL_ORDER, vals, dec["trips"], strict=False):
            tripped = bool(t[i])
            if only_tripped and not tripped:
                continue
            s = {"name": name, "value": round(v, 4) if isinstance(v, float) else v, "threshold": thr}
            if name == "dual_sim" and f["shadow"][i]:
                s["detail"] = _sh.shadow_detail(int(f["shadow_peer"][i]), float(f["shadow_j"][i]))
            if not only_tripped:
                s["tripped"] = tripped
            out.append(s)
        return out

    def _record(self, r, phase, i, f, dec, D, now_s, emitted_at, prev) -> dict:
        ms = self._msisdn[r]
        ep = int(self._a["episode"][r])
        return {
            "alarm_id": alarm_id(ms, phase, int(D), ep),
            "msisdn": ms,
            "phase": phase,
            "score": round(float(dec["score"][i]), 4),
            "signals": self._signal_list(i, f, dec, True),
            "reason": ("competitor_switch", "seasonal", "low_usage", "arrears", "unknown")[int(dec["reason"][i])],
            "value_tier": ("high", "mid", "low")[int(dec["tier"][i])],
            "event_time": float(now_s),
            "emitted_at": emitted_at,
            "schema_version": SCHEMA_VERSION,
            "previous_phase": PHASE_NAMES[prev],
            "episode": ep,
        }

    def evaluate(self, touched: np.ndarray, now_s: float | None = None) -> list[dict]:
        """Signals, score and lifecycle for ``touched`` rows at event time ``now_s`` (default: the
        watermark). A caller reading several inputs passes the time up to which all of them are
        complete, so that a topic read ahead of another does not look like a traffic drop.
        The service and the backtest decide at day boundaries instead (:meth:`decide`)."""
        if self._wm is None or len(touched) == 0:
            return []
        now = self._wm if now_s is None else min(float(now_s), self._wm)
        D = self.day_of(now)
        rows = np.asarray(touched, dtype=np.int64)
        a = self._a
        # rows whose inputs did not change since their last evaluation on the same day would decide
        # the same again (the lifecycle step is idempotent): skip them.
        rows = rows[(a["dirty"][rows] == 1) | (a["eval_day"][rows] != D)]
        return self._evaluate_rows(rows, D, now)

    def sweep(self, now_s: float) -> list[dict]:
        """The decision of the day of ``now_s`` (:meth:`decide`); its alarms."""
        return self.decide(self.day_of(now_s)).alarms

    def decide(self, D: int) -> Decision:
        """Decide day ``D``: evaluate, as of its start (reading the complete days before it), every
        subscriber active on the day before, silent for ``silence_days``, lapsing, with live
        dual-SIM or second-SIM evidence, with an immediate alarm to take over, or not healthy.
        The set and every feature read are functions of event time: a decision made after events
        of day D arrived (within the grace) decides the same as one made before them."""
        return self.decide_rows(D, self.decide_candidates(D))

    def decide_candidates(self, D: int) -> np.ndarray:
        """The rows :meth:`decide` evaluates for day ``D`` (see there). Handset switches too old to
        give evidence a decision from ``D`` on reads are forgotten here, once per day decided."""
        cfg = self.config
        self._handsets.expire(D - cfg.dual_sim_days + 1)
        self._voids(D, keep=True)
        n = self._n
        if n == 0:
            return NO_ROWS
        a = self._a
        every = np.arange(n, dtype=np.int64)
        cand = a["stamp"][:n, (D - 1) % self.R] == D - 1
        la = self._active_before(every, D)
        cand |= (self._silent_days(la, D) >= cfg.silence_days) & (la != NODAY)
        cand |= a["phase"][:n] > 0
        pre = (a["plan"][:n] == 1) & (a["rch_count"][:n] >= self._lapse_min_count)
        if pre.any():
            pr = np.flatnonzero(pre)
            cand[pr] |= self._lapse(pr, D)["lapse_trip"]
        lo = D - cfg.dual_sim_days + 1
        cand |= self._dual_before(every, D) >= lo
        if cfg.shadow_enabled:
            cand |= (a["sh_peer"][:n] != 0) & (a["sh_day"][:n] >= lo)
        im = a["imm_day"][:n]
        cand |= (im != NODAY) & (im < D) & (im >= a["ep_day"][:n]) & (a["phase"][:n] < 2)
        # a subscriber decided for D already (by the worker that owned it before) is not decided again;
        # one first seen on D or later has no complete day to decide (evidence dated before its
        # first event, a handset switch met by its first use, waits for its first day's decision:
        # a restart that decides its last day again finds the same candidates as the run before)
        return np.flatnonzero(
            cand & (a["alive"][:n] == 1) & (a["dec_day"][:n] < D) & (a["first_day"][:n].astype(np.int64) < D)
        )

    def decide_rows(self, D: int, rows: np.ndarray) -> Decision:
        """Decide day ``D`` for ``rows`` (a part of :meth:`decide_candidates`: a worker decides a
        large population in parts, between batches, so that events keep flowing)."""
        cfg = self.config
        a = self._a
        rows = rows[a["alive"][rows] == 1] if len(rows) else rows
        alarms: list[dict] = []
        now_s = cfg.day_start_s(D)
        for i in range(0, len(rows), EVAL_CHUNK):
            alarms.extend(self._evaluate_rows(rows[i : i + EVAL_CHUNK], D, now_s))
        a["dec_day"][rows] = D  # so every row decided changed (its decided day, persisted with it)
        alarms.sort(key=lambda x: x["msisdn"])
        return Decision(alarms, rows)

    def immediate(self, hits: list) -> list[dict]:
        """Alarm records for the care-line dials :meth:`apply` found tripping (``Applied.immediate``):
        phase ``alarm`` on the dial's day, signal ``competitor_hotline`` with the dials counted up
        to it; the score and tier read the complete days before it. Independent of the day
        decisions (which take the alarm over from the day after, without a second record).

        The dials of one day are evaluated together (one feature pass for all their rows: this
        reads the state and changes nothing, so it equals one pass per dial; until 2026-12-07 it
        was one per dial, ~1-2 ms each, which at 1% dials of 28,000 events/s was half the worker's
        time); the records keep the hits' order."""
        cfg = self.config
        alive = self._a["alive"]
        live = [h for h in hits if alive[h[0]]]
        by_day: dict[int, list[int]] = {}
        for i, h in enumerate(live):
            by_day.setdefault(int(h[1]), []).append(i)
        out: list = [None] * len(live)
        for d, idx in by_day.items():
            rows = np.array([live[i][0] for i in idx], dtype=np.int64)
            f = self._features(rows, d)
            f["hotline"] = np.array([live[i][3] for i in idx], dtype=np.int64)
            dec = self._decide_arrays(rows, f, d)
            for j, i in enumerate(idx):
                r, _, ts, cnt = live[i]
                rec = self._record(r, "alarm", j, f, dec, d, ts, self._now(), int(self._a["phase"][r]))
                rec["signals"] = [{"name": "competitor_hotline", "value": int(cnt), "threshold": cfg.hotline_min_calls}]
                out[i] = rec
        return out

    # ------------------------------------------------------------------ views and snapshots
    def view(self, msisdn: str) -> dict | None:
        r = self._row.get(msisdn)
        if r is None:
            return None
        cfg = self.config
        a = self._a
        D = self.day_of(self._wm) if self._wm is not None else 0
        rows = np.array([r], dtype=np.int64)
        f = self._features(rows, D)
        dec = self._decide_arrays(rows, f, D)
        days = []
        for d in range(D - 13, D + 1):
            s = d % self.R
            if int(a["stamp"][r, s]) != d:
                vals = dict.fromkeys(DAY_FIELDS, 0)
            else:
                vals = {nm: int(a[nm][r, s]) for nm in DAY_FIELDS if nm != "bits"}
                vals["bits"] = int(a["bits"][r, s])
            days.append(day_dict(cfg.date_of_day(d), vals))
        return {
            "msisdn": msisdn,
            "phase": PHASE_NAMES[int(a["phase"][r])],
            "episode": int(a["episode"][r]),
            "score": round(float(dec["score"][0]), 4),
            "signals": self._signal_list(0, f, dec, False),
            "value_tier": ("high", "mid", "low")[int(dec["tier"][0])],
            "reason_guess": ("competitor_switch", "seasonal", "low_usage", "arrears", "unknown")[int(dec["reason"][0])],
            "as_of_day": cfg.date_of_day(D),
            "days": days,
        }

    def state_of(self, msisdn: str) -> dict | None:
        """Canonical, equality-friendly state of one subscriber (for tests against the reference)."""
        r = self._row.get(msisdn)
        if r is None:
            return None
        a = self._a
        ring = {}
        for s in range(self.R):
            d = int(a["stamp"][r, s])
            if d == NODAY:
                continue
            ring[d] = tuple(int(a[nm][r, s]) for nm in DAY_FIELDS)
        circle = {}
        for b in range(K):
            if int(a["c_cnt"][r, b]) > 0:
                circle[b] = (
                    int(a["c_peer"][r, b]),
                    int(a["c_mask"][r, b]),
                    int(a["c_last"][r, b]),
                    int(a["c_sec"][r, b]),
                    int(a["c_cnt"][r, b]),
                    int(a["c_comp"][r, b]),
                )
        imeis = sorted(
            (int(a["imei_h"][r, j]), int(a["imei_d"][r, j])) for j in range(2) if int(a["imei_h"][r, j]) != 0
        )

        def ints(*names: str) -> tuple[int, ...]:
            return tuple(int(a[k][r]) for k in names)

        return {
            "ring": ring,
            "circle": circle,
            "imeis": imeis,
            "hwm": [int(x) for x in a["hwm"][r]],
            "first_day": int(a["first_day"][r]),
            "last_active": int(a["last_active"][r]),
            "rch": (int(a["rch_count"][r]), float(a["rch_first"][r]), float(a["rch_last"][r]), int(a["rch_sum"][r])),
            "profile": (*ints("plan", "activated", "arpu_c", "key_group"), float(a["profile_ts"][r])),
            "dual": ints("dual_day", "dual_n"),
            "life": ints("phase", "episode", "last_emit_day", "last_emit_sev", "emitted", "clear_day"),
            "shadow": ints(*_V3_FIELDS),
            "decisions": (float(a["rch_prev"][r]), *ints("imm_day", "ep_day", "dual_prev", "sw_h", "sw_d", "dec_day")),
            "dial": (int(a["dial_day"][r]), float(a["dial_ts"][r]), int(a["dial_n"][r])),
        }

    def snapshot_many(self, rows: np.ndarray, prefix: np.ndarray | None = None) -> list[bytes]:
        """Snapshots of ``rows`` (engine rows, as ``apply`` returns them), in order: the bytes of
        :meth:`snapshot`, each field gathered for all rows in one numpy operation and the sparse
        encoding (:mod:`stream.engine.sparse`) vectorised over them (a checkpoint writes thousands
        at once). ``prefix`` (uint8, one row of bytes per engine row) is put before each snapshot
        (a caller's header, in the same pass)."""
        rows = np.asarray(rows, dtype=np.int64)
        k = len(rows)
        if k == 0:
            return []
        if k > _SNAP_BLOCK:
            # in blocks whose records stay in the CPU caches between the gather and the encoding
            # (a 100k-subscriber engine, best of 4: 14,000 rows 3.09 -> 2.35 us per row, 60,000 rows 3.35 -> 2.16)
            out: list[bytes] = []
            for s in range(0, k, _SNAP_BLOCK):
                out += self.snapshot_many(
                    rows[s : s + _SNAP_BLOCK], None if prefix is None else prefix[s : s + _SNAP_BLOCK]
                )
            return out
        head = np.broadcast_to(np.array([SNAPSHOT_VERSION, self.R], dtype=np.uint8), (k, 2))
        if prefix is not None:
            head = np.concatenate([np.asarray(prefix, dtype=np.uint8).reshape(k, -1), head], axis=1)
        # each row's fields side by side in one record (a structured array), each field gathered
        # straight into its place in its own dtype (gathering (k, width) byte parts and then
        # concatenating them: 3.8 µs per row instead of 3.0, 10,000 rows of a 200k-subscriber engine)
        rec = np.empty(k, dtype=_record_dtype(self.R))
        if "_pad" in rec.dtype.names:
            rec["_pad"] = 0
        a = self._a
        for name in _FIELD_NAMES:
            np.take(a[name], rows, axis=0, out=rec[name])
        return _sparse.pack_words(rec.view(np.uint64).reshape(k, -1), head, initial_body(self.R))

    def snapshot(self, msisdn: str) -> bytes | None:
        """The subscriber's state as bytes (:meth:`restore` reads them; version ``SNAPSHOT_VERSION``)."""
        r = self._row.get(msisdn)
        if r is None:
            return None
        return self.snapshot_many(np.array([r], dtype=np.int64))[0]

    def restore(self, msisdn: str, data: bytes) -> None:
        if len(data) < 2:
            raise ValueError("snapshot too short")
        self._dials_waiting = True  # (it may hold a waiting dial: the next judge_dials looks)
        ver, ring = struct.unpack_from("<BB", data, 0)
        if ver not in (1, 2, 3, 4, 5, 6, SNAPSHOT_VERSION):
            raise ValueError(f"snapshot version {ver} not supported (expected {SNAPSHOT_VERSION})")
        if not 35 <= ring <= 60:
            raise ValueError(f"snapshot ring_days {ring} not in 35..60")
        self._tot_cache.clear()  # a row's ring (re)written: the day totals change
        self._void_memo.clear()

        def shape(tail):  # the snapshot's own ring size (a changed ring_days is converted below)
            return tuple(ring if x == "R" else x for x in tail)

        if ver >= 6:  # sparse (6: version 5's fields; 7: this version's): restored from their dense bytes
            data = bytes([ver, ring]) + _sparse.unpack(data, 2, initial_body(ring, ver))

        # older versions lack the trailing fields added since: they restore to their initial value
        fields = fields_of(ver)
        expected = 2 + sum(
            np.dtype(dt).itemsize * int(np.prod(shape(tail), dtype=np.int64)) for _, tail, dt, _ in fields
        )
        if len(data) != expected:
            raise ValueError(f"snapshot has {len(data)} bytes, expected {expected}")
        r = self._restore_row(msisdn)
        pos = 2
        for name, _tail, _dt, init in FIELDS[len(fields) :]:
            self._a[name][r] = init
        ring_vals = {}
        for name, tail, dt, _ in fields:
            shp = shape(tail)
            cnt = int(np.prod(shp, dtype=np.int64))
            nb = cnt * np.dtype(dt).itemsize
            val = np.frombuffer(data, dtype=dt, count=cnt, offset=pos).reshape(shp)
            pos += nb
            if ring != self.R and tail == ("R",):
                ring_vals[name] = val
            else:
                self._a[name][r] = val
        if ring_vals:  # written with another ring_days: each day to its slot in this ring, newest kept
            for name, tail, _dt, init in FIELDS:
                if tail == ("R",):
                    self._a[name][r] = init
            st = ring_vals["stamp"].astype(np.int64)
            for j in np.argsort(st, kind="stable").tolist():
                if st[j] != NODAY:
                    for name in ring_vals:
                        self._a[name][r, st[j] % self.R] = ring_vals[name][j]
        self._a["dirty"][r] = 1
        self._a["eval_day"][r] = NODAY
        a = self._a
        self._index_handsets(
            msisdn, a["imei_h"][r].tolist(), a["imei_d"][r].tolist(), int(a["sw_h"][r]), int(a["sw_d"][r])
        )

    def _restore_row(self, msisdn: str) -> int:
        """The row a snapshot of ``msisdn`` is restored into: its own (out of the handset index
        until restored) or a new one."""
        r = self._row.get(msisdn)
        if r is None:
            return self._new_row(msisdn)
        self._unindex(r)
        return r

    def _index_handsets(self, msisdn: str, imei_h: list, imei_d: list, sw_h: int, sw_d: int) -> None:
        """A restored subscriber's handset slots and switch into the engine-wide IMEI index."""
        self._handsets.add_number(msisdn, [(h, d) for h, d in zip(imei_h, imei_d, strict=True) if h], sw_h, sw_d)

    def restore_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """:meth:`restore` of many ``(msisdn, snapshot)`` pairs (distinct msisdns), with the same
        result: the snapshots of this version and ring are decoded together and each field is
        written for all their rows at once (a worker recovering a million subscribers one by one
        spent ~5 minutes in :meth:`restore`); others, and any set holding an invalid one, go one
        by one (which names the fault)."""
        block: list[tuple[str, bytes]] = []
        for m, data in items:  # in order (the handset index keeps the first numbers of an IMEI)
            if len(data) >= 2 and data[0] == SNAPSHOT_VERSION and data[1] == self.R:
                block.append((m, data))
                if len(block) == _RESTORE_BLOCK:
                    self._restore_block(block)
                    block = []
            else:
                if block:
                    self._restore_block(block)
                    block = []
                self.restore(m, data)
        if block:
            self._restore_block(block)

    def _restore_block(self, block: list[tuple[str, bytes]]) -> None:
        self._dials_waiting = True  # (they may hold waiting dials: the next judge_dials looks)
        words = _sparse.unpack_many([d for _, d in block], 2, initial_body(self.R))
        if words is None or len({m for m, _ in block}) != len(block):
            for m, data in block:
                self.restore(m, data)
            return
        self._tot_cache.clear()
        self._void_memo.clear()
        rec = words.view(_record_dtype(self.R)).reshape(len(block))
        rows = np.empty(len(block), dtype=np.int64)
        slots = zip(
            rec["imei_h"].tolist(), rec["imei_d"].tolist(), rec["sw_h"].tolist(), rec["sw_d"].tolist(), strict=True
        )
        for i, ((m, _), (h2, d2, sh, sd)) in enumerate(zip(block, slots, strict=True)):
            rows[i] = self._restore_row(m)
            self._index_handsets(m, h2, d2, sh, sd)
        a = self._a
        for name in _FIELD_NAMES:
            a[name][rows] = rec[name]
        a["dirty"][rows] = 1
        a["eval_day"][rows] = NODAY

    def _unindex(self, r: int) -> None:
        hs = [int(self._a["imei_h"][r, j]) for j in range(2)]
        self._handsets.remove_number(self._msisdn[r], [h for h in hs if h], int(self._a["sw_h"][r]))

    def forget(self, msisdns: Iterable[str]) -> None:
        rows = []
        for m in msisdns:
            r = self._row.pop(m, None)
            if r is None:
                continue
            self._index.remove(m)
            self._unindex(r)
            self._msisdn[r] = None
            rows.append(r)
        if rows:
            ra = np.array(rows, dtype=np.int64)
            self._reset_rows(ra)
            self._free.extend(rows)
