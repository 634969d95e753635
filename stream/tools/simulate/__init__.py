"""Synthetic operator with ground truth: ``churnwatch simulate --subscribers N --days D --seed S``.

The simulator builds a population of our ("own") subscribers with a consistent call graph, runs
it day by day (vectorised with numpy, deterministic for a seed) and emits input events in the
wire contract (``stream/contract.py``, ``schemas/``) in **arrival order**, together with a ground
truth of who churns and when.

Generator API (in-process, for tests, benchmarks and the demo)::

    events, truth = generate(n_subscribers, days, seed, start="2026-01-05", fmt="bytes",
                             malformed_rate=0.0005, late=True, mix=None)

``truth`` is a list of dicts (the CSV rows below, computed up front); ``events`` is a lazy
iterator in arrival order. ``fmt`` chooses the items: ``"bytes"`` (one JSON line, no newline),
``"dict"`` (decoded events; malformed lines stay raw ``bytes`` so they can be told apart) or
``"records"`` (``(topic_kind, key, value)`` tuples ready for Kafka: ``topic_kind`` is one of
``"calls" "sms" "recharges" "profiles"``, ``key`` the msisdn as UTF-8 bytes; malformed lines go
to ``"calls"`` with the key of the event they were derived from). ``async produce_to_kafka``
sends such an iterator to the input topics. ``simulation_start_ts(start)`` gives the Unix time
of day 0.

Time: day ``d`` is the local calendar day ``start + d`` in UTC+8 (China, no DST); day 0 starts at
local midnight of ``start``. ``ts`` is Unix seconds (UTC).

Ground truth CSV (``--truth FILE.csv``, header line, one row per subscriber)::

    msisdn,archetype,churn_day,churn_ts,stop_day,plan,arpu,tenure,second_sim,notes

- ``archetype``: loyal | switcher | silent_porter | seasonal_migrant | drifter | prepaid_lapser
- ``churn_day``: day index (0-based from the start) on which the subscriber is gone (no own
  activity from that day on); empty for non-churners (loyal, seasonal_migrant).
- ``churn_ts``: Unix seconds of local midnight starting ``churn_day``; empty when no churn.
- ``stop_day``: for silent porters the day traffic stops abruptly (= churn_day); else empty.
- ``plan``: prepaid | postpaid; ``arpu``: monthly ARPU (yuan); ``tenure``: days since activation
  at day 0.
- ``second_sim``: switchers' competitor shadow number (cu/ct) that takes over their traffic;
  empty otherwise.
- ``notes``: ``;``-separated ``key=value`` facts, e.g. ``holiday=40-46``, ``handset_change=22``,
  ``handdown_to=86...@25`` (old handset, i.e. its IMEI, reappears with another of our numbers
  from that day), ``handdown_from=...``, ``dual_own_sim=86...`` (shares a handset with another
  of our numbers all along), ``ramp_start=50``, ``shadow_from=55``, ``hotline=61:10010``,
  ``rival=cu``, ``dual_sim_handset=55``, ``quiet=48-76``, ``decay_from=30``,
  ``last_recharge=60``, ``recharge_every=14``, ``rival_hotline=33:10000`` (a loyal customer
  who once dialled a rival's care line).

Archetypes and default mix (``DEFAULT_MIX``; counts are exact after rounding):

- **loyal 80%**: steady. 10% of them take a holiday (5-9 quiet days at ~5% of usual traffic,
  then back); 5% change handset (new IMEI from a day on), and a quarter of those hand the old
  handset to a close contact who is also ours (that contact's calls then carry the old IMEI);
  0.5% share one handset with another of our numbers from the start (a person with two of our
  SIMs: the IMEI-with-two-own-numbers pattern exists in the baseline, it is not churn); 0.5% dial
  a rival care line once (calling for a relative). Loyal customers' (and migrants') usage also
  drifts slowly: a factor exp(slope * day) with slope ~ N(0, 0.002) per day (about +-18% over
  90 days at one sd), so a mild decline alone is not churn.
- **switcher 6%**: over 3-6 weeks before the churn day: a ramp start, then a second SIM (a new
  cu/ct "shadow" number) appears; the shadow calls/texts the subscriber's close contacts (our
  contacts get "in" events with ``peer`` = the shadow) and the contacts' calls migrate to the
  shadow (their "out" events to the shadow, ``peer_operator`` = the rival); more calls to
  competitor peers; 90% dial the rival's care line (10010 for cu, 10000 for ct) once or twice;
  own traffic decays over the weeks and is gone at the churn day (the old number is cancelled);
  prepaid switchers stop recharging about a week after the shadow appears. 40% move the old SIM
  into a new dual-SIM handset with the rival SIM (new IMEI on our side at the shadow day); in a
  quarter of those (10% of switchers) the old handset goes to a close contact of ours, so the
  subscriber's old IMEI shows up with another of OUR numbers. We never see the rival SIM's IMEI
  (its CDRs are the rival's), so IMEI evidence is rare, as in reality. (Model: one IMEI per
  handset; an IMEI is seen with two of our numbers only for a shared handset or a hand-down.)
- **silent_porter 3%**: normal until the stop day, then nothing at all (number ported out;
  contacts still call the ported number, with ``peer_operator`` = the new operator).
- **seasonal_migrant 4%**: quiet for 3-5 weeks (~4% of usual traffic, away cell, recharges
  paused) somewhere after the baseline, then back to normal. Not churners.
- **drifter 3%**: usage decays slowly (30-60 days) to nothing; churn day where it hits ~0.
- **prepaid_lapser 4%** (all prepaid): recharges stop (``last_recharge``); usage stays normal
  for one usual interval while the balance lasts, then declines to nothing over 10-20 days (the
  missed recharge falls after the baseline); churn day (suspension) at the end.

Churn days (and the migrants' quiet windows) fall in the second half of the period, and no
precursor starts before day 35 (``BASELINE_DAYS``, shortened for short test periods), so the
engine has a clean baseline. Default period 90 days.

Call graph: communities with heavy-tailed sizes (lognormal, 5-400); each subscriber has a
heavy-tailed number of contacts (median ~12, up to 120): ~55% our own subscribers (85% within
the community; a few own-network numbers outside the population), the rest cu/ct numbers (half
from a community pool, so competitor numbers are shared) plus a few service numbers (10086,
banks, 12306). Edge weights are lognormal (sigma 1.2), so a few close contacts carry most
traffic. Own-to-own calls are one call with two CDRs (the caller's "out", the callee's "in",
same ts and duration). Rhythms: hour-of-day profile (quiet night, peaks late morning and
evening), weekends at ~85-90%, per-subscriber daily gamma noise. About 5-7 calls+SMS per active
subscriber per day (out + in). Prepaid subscribers recharge every 7/10/14/30 days (±1-2),
amounts follow ARPU. One profile per subscriber at the start (arrives first), ~2% get a profile
update (ARPU change) later.

Arrival order: 85% of events arrive within about a minute, 12% minutes to an hour late
(lognormal, median 20 min), 2.7% 1-12 h, 0.3% 12-30 h; the stream is ordered by arrival time
(a per-day sort plus a carry-over of the not-yet-arrived). Malformed lines (default 0.05% of
lines, ``--malformed-rate 0`` disables): truncated JSON, a missing required field, a bad type
(string duration / ts), a non-UTF-8 byte sequence; each is derived from a real event.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as _dt
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from ...operators import DEFAULT_COMPETITOR_HOTLINES, DEFAULT_PREFIXES

__all__ = [
    "ARCHETYPES",
    "CHURN_ARCHETYPES",
    "DEFAULT_MIX",
    "DEFAULT_START",
    "TRUTH_FIELDS",
    "TOPIC_KINDS",
    "generate",
    "simulation_start_ts",
    "write_truth",
    "read_truth",
    "produce_to_kafka",
    "add_arguments",
    "run",
]

logger = logging.getLogger(__name__)

ARCHETYPES = ("loyal", "switcher", "silent_porter", "seasonal_migrant", "drifter", "prepaid_lapser")
CHURN_ARCHETYPES = ("switcher", "silent_porter", "drifter", "prepaid_lapser")
DEFAULT_MIX: dict[str, float] = {
    "loyal": 0.80,
    "switcher": 0.06,
    "silent_porter": 0.03,
    "seasonal_migrant": 0.04,
    "drifter": 0.03,
    "prepaid_lapser": 0.04,
}
DEFAULT_START = "2026-01-05"  # a Monday
TZ_OFFSET_S = 8 * 3600
DAY_S = 86400
BASELINE_DAYS = 35
TRUTH_FIELDS = (
    "msisdn",
    "archetype",
    "churn_day",
    "churn_ts",
    "stop_day",
    "plan",
    "arpu",
    "tenure",
    "second_sim",
    "notes",
)
TOPIC_KINDS = ("calls", "sms", "recharges", "profiles")

# Loyal sub-variants (shares of the loyal population).
HOLIDAY_SHARE = 0.10
HANDSET_SHARE = 0.05
HANDDOWN_SHARE = 0.25  # of handset changers (loyal and dual-SIM switchers)
DUAL_OWN_SIM_SHARE = 0.005
LOYAL_RIVAL_HOTLINE_SHARE = 0.005
SWITCHER_HOTLINE_SHARE = 0.90
SWITCHER_DUAL_SIM_HANDSET_SHARE = 0.40
LOYAL_TREND_SD_PER_DAY = 0.002  # slow usage drift of non-churners: exp(slope * day), slope ~ N(0, sd)

# event kinds in the columnar day buffers (same codes as stream.contract KIND_*)
_CALL, _SMS, _RECHARGE, _PROFILE = 0, 1, 2, 3
# operator codes
_OP_NAMES = ("own", "cu", "ct")
_OP_NONE = -1
_SERVICES = (("10086", 0), ("95588", _OP_NONE), ("95533", _OP_NONE), ("95555", _OP_NONE), ("12306", _OP_NONE))
_HOTLINE_OF = {v: k for k, v in DEFAULT_COMPETITOR_HOTLINES.items()}  # "cu" -> "10010"
_CHANNELS = ("app", "card", "retail", "bank", "wechat")

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


def simulation_start_ts(start: str = DEFAULT_START) -> int:
    """Unix seconds of local (UTC+8) midnight of the ``start`` date (YYYY-MM-DD) = day 0."""
    d = _dt.date.fromisoformat(start)
    return int(_dt.datetime(d.year, d.month, d.day, tzinfo=_dt.UTC).timestamp()) - TZ_OFFSET_S


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        n = int(ch)
        if i % 2 == 0:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return str((10 - total % 10) % 10)


@dataclass
class _World:
    """Everything planned up front (fixed-size arrays; the day loop only reads it)."""

    n: int
    days: int
    start_ts: int
    numbers: list[str]  # number id -> digits; ids [0, n) are our subscribers
    num_op: np.ndarray  # number id -> operator code (-1 none)
    arche: np.ndarray  # archetype index per subscriber
    act: np.ndarray  # (n, days) float32 activity multiplier (0 = nothing)
    status: np.ndarray  # (n, days) int8: 0 on network, 1 ported out, 2 cancelled
    shadow: np.ndarray  # number id of the switcher's shadow (-1)
    shadow_s: np.ndarray  # (n, days) float32 share of traffic carried by the shadow
    rival: np.ndarray  # rival operator code for switchers/porters (-1)
    boost: np.ndarray  # (n, days) float32 extra competitor call rate
    rival_peers: np.ndarray  # (n, 3) number ids of competitor peers
    base_call: np.ndarray
    base_sms: np.ndarray
    base_in: np.ndarray
    indptr: np.ndarray
    c_peer: np.ndarray
    c_cum: np.ndarray
    c_cum0: np.ndarray
    c_tot: np.ndarray
    imei_strs: list[str]
    imei_old: np.ndarray
    imei_new: np.ndarray
    change_day: np.ndarray
    cells: np.ndarray  # (n, 3) home/work/other cell ids
    away_cell: np.ndarray
    quiet: np.ndarray  # (n, days) bool: away (migrant quiet window) -> away cell
    specials: dict[int, list[tuple]]  # day -> [(sub, peer_id, op, kind, hour_p)]
    recharges: dict[int, list[tuple]]  # day -> [(sub, amount, channel)]
    profiles0: list[dict]
    profile_updates: dict[int, list[dict]]
    truth: list[dict] = field(default_factory=list)
    service0: int = -1  # number id of 10086
    keys: list[bytes] | None = None  # msisdn bytes per subscriber (Kafka keys), built on first use


def _unique_numbers(rng: np.random.Generator, prefixes: list[str], count: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        k = (count - len(out)) * 2 + 16
        pre = rng.integers(0, len(prefixes), k)
        suf = rng.integers(0, 100_000_000, k)
        for p, s in zip(pre.tolist(), suf.tolist(), strict=False):
            num = f"86{prefixes[p]}{s:08d}"
            if num not in taken:
                taken.add(num)
                out.append(num)
                if len(out) == count:
                    break
    return out


def _split_counts(n: int, mix: dict[str, float]) -> list[int]:
    shares = np.array([mix.get(a, 0.0) for a in ARCHETYPES], dtype=float)
    if shares.sum() <= 0:
        raise ValueError("archetype mix is empty")
    shares = shares / shares.sum()
    raw = shares * n
    counts = np.floor(raw).astype(int)
    rem = n - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rem]] += 1
    return counts.tolist()


def _plan(n: int, days: int, seed: int, start: str, mix: dict[str, float]) -> _World:
    if n < 1 or days < 1:
        raise ValueError("need at least one subscriber and one day")
    rng = np.random.default_rng(seed)
    start_ts = simulation_start_ts(start)
    start_date = _dt.date.fromisoformat(start)
    own_p = [p for p, o in DEFAULT_PREFIXES.items() if o == "own"]
    cu_p = [p for p, o in DEFAULT_PREFIXES.items() if o == "cu"]
    ct_p = [p for p, o in DEFAULT_PREFIXES.items() if o == "ct"]
    taken: set[str] = set()

    # --- numbers: our population first
    numbers = _unique_numbers(rng, own_p, n, taken)
    num_op: list[int] = [0] * n

    def add_numbers(nums: list[str], op: int) -> np.ndarray:
        first = len(numbers)
        numbers.extend(nums)
        num_op.extend([op] * len(nums))
        return np.arange(first, first + len(nums))

    def new_external(count: int) -> np.ndarray:
        """count cu/ct numbers (60% cu)."""
        is_cu = rng.random(count) < 0.6
        ncu = int(is_cu.sum())
        cu_ids = add_numbers(_unique_numbers(rng, cu_p, ncu, taken), 1)
        ct_ids = add_numbers(_unique_numbers(rng, ct_p, count - ncu, taken), 2)
        ids = np.empty(count, dtype=np.int64)
        ids[is_cu] = cu_ids
        ids[~is_cu] = ct_ids
        return ids

    service_ids = add_numbers([s for s, _ in _SERVICES], _OP_NONE)
    num_op[service_ids[0]] = 0  # 10086 is ours
    hotline_ids = {op: add_numbers([_HOTLINE_OF[op]], 1 if op == "cu" else 2)[0] for op in ("cu", "ct")}

    # --- archetypes (exact counts, random placement)
    counts = _split_counts(n, mix)
    arche = np.repeat(np.arange(len(ARCHETYPES)), counts)
    rng.shuffle(arche)
    A = {a: i for i, a in enumerate(ARCHETYPES)}

    # --- profiles
    prepaid_share = np.array([0.55, 0.5, 0.4, 0.75, 0.6, 1.0])[arche]
    prepaid = rng.random(n) < prepaid_share
    arpu = np.where(prepaid, rng.lognormal(np.log(38), 0.5, n), rng.lognormal(np.log(95), 0.55, n))
    arpu = np.where(arche == A["drifter"], arpu * 0.6, arpu)
    arpu = np.round(np.clip(arpu, 8, 800), 1)
    tenure = np.clip(rng.lognormal(np.log(900), 0.9, n), 30, 9000).astype(int)
    key_group = (~prepaid) & (rng.random(n) < 0.15)

    # --- usage levels (outgoing calls and SMS per day; incoming from outside peers)
    level = rng.lognormal(0.0, 0.45, n) * np.clip(arpu / 60.0, 0.5, 2.0) ** 0.35
    base_call = 2.2 * level
    base_sms = 0.9 * level * rng.lognormal(0.0, 0.4, n)
    base_in = (base_call + base_sms) * 0.9

    # --- communities (heavy-tailed sizes)
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(int(np.clip(rng.lognormal(np.log(40), 0.9), 5, 400)))
    sizes[-1] -= sum(sizes) - n
    sizes = [s for s in sizes if s > 0]
    members = rng.permutation(n)
    comm_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    comm_size = np.array(sizes)
    comm_of = np.empty(n, dtype=np.int64)
    comm_of[members] = np.repeat(np.arange(len(sizes)), sizes)

    # --- contact circles
    k_total = np.clip(np.round(rng.lognormal(np.log(12), 0.6, n)), 3, 120).astype(int)
    own_frac = np.clip(rng.beta(5.5, 4.5, n), 0.1, 0.9)
    k_own = np.maximum(1, np.round(k_total * own_frac)).astype(int)
    k_ext = np.maximum(1, k_total - k_own)
    # own edges: each subscriber draws about half its own contacts (the other half draws it)
    m = np.maximum(1, np.ceil(k_own / 2)).astype(int)
    src = np.repeat(np.arange(n), m)
    in_comm = rng.random(src.size) < 0.85
    c = comm_of[src]
    partner = np.where(
        in_comm,
        members[comm_start[c] + np.floor(rng.random(src.size) * comm_size[c]).astype(np.int64)],
        rng.integers(0, n, src.size),
    )
    keep = partner != src
    a_, b_ = np.minimum(src[keep], partner[keep]), np.maximum(src[keep], partner[keep])
    pair = np.unique(a_.astype(np.int64) * n + b_)
    a_, b_ = pair // n, pair % n
    w_pair = rng.lognormal(0.0, 1.2, a_.size)
    e_src = [a_, b_]
    e_peer = [b_, a_]
    e_w = [w_pair, w_pair]
    # a few own-network numbers outside the simulated population (~3% of own contacts)
    n_outside = rng.binomial(k_own, 0.03)
    tot_out = int(n_outside.sum())
    if tot_out:
        e_src.append(np.repeat(np.arange(n), n_outside))
        e_peer.append(add_numbers(_unique_numbers(rng, own_p, tot_out, taken), 0))
        e_w.append(rng.lognormal(0.0, 1.2, tot_out))
    # competitor contacts: half from a community pool (shared), half private
    pool_sizes = np.maximum(3, (comm_size * 0.6).astype(int))
    pool_start = np.concatenate([[0], np.cumsum(pool_sizes)[:-1]])
    pool_ids = new_external(int(pool_sizes.sum()))
    ext_src = np.repeat(np.arange(n), k_ext)
    from_pool = rng.random(ext_src.size) < 0.5
    cs = comm_of[ext_src]
    ext_peer = np.empty(ext_src.size, dtype=np.int64)
    ext_peer[from_pool] = pool_ids[
        pool_start[cs[from_pool]]
        + np.floor(rng.random(int(from_pool.sum())) * pool_sizes[cs[from_pool]]).astype(np.int64)
    ]
    ext_peer[~from_pool] = new_external(int((~from_pool).sum()))
    e_src.append(ext_src)
    e_peer.append(ext_peer)
    e_w.append(rng.lognormal(0.0, 1.2, ext_src.size) * 0.8)
    # service numbers (10086, banks, rail): low weight
    k_svc = 1 + rng.poisson(0.4, n)
    svc_src = np.repeat(np.arange(n), k_svc)
    e_src.append(svc_src)
    e_peer.append(service_ids[rng.choice(len(service_ids), svc_src.size, p=[0.5, 0.15, 0.1, 0.1, 0.15])])
    e_w.append(rng.uniform(0.03, 0.12, svc_src.size))

    src_all = np.concatenate(e_src)
    peer_all = np.concatenate(e_peer).astype(np.int64)
    w_all = np.concatenate(e_w)
    order = np.argsort(src_all, kind="stable")
    src_all, peer_all, w_all = src_all[order], peer_all[order], w_all[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(src_all, minlength=n))])
    c_cum = np.cumsum(w_all)
    c_cum0 = np.concatenate([[0.0], c_cum])[indptr[:-1]]
    c_tot = np.concatenate([[0.0], c_cum])[indptr[1:]] - c_cum0

    # close own contacts (by weight), for hand-downs
    def closest_own(i: int, exclude: set[int]) -> int:
        lo, hi = indptr[i], indptr[i + 1]
        peers = peer_all[lo:hi]
        ws = w_all[lo:hi]
        best, bw = -1, -1.0
        for p, w in zip(peers.tolist(), ws.tolist(), strict=False):
            if p < n and p not in exclude and w > bw:
                best, bw = p, w
        return best

    # competitor peers per subscriber (for the switchers' extra rival traffic)
    rival_peers = np.full((n, 3), -1, dtype=np.int64)
    num_op_arr = np.asarray(num_op, dtype=np.int8)
    for i in range(n):
        lo, hi = indptr[i], indptr[i + 1]
        pe = peer_all[lo:hi]
        comp = pe[(num_op_arr[pe] == 1) | (num_op_arr[pe] == 2)]
        if comp.size:
            rival_peers[i] = comp[rng.integers(0, comp.size, 3)]

    # --- IMEIs and cells
    def new_imeis(count: int) -> np.ndarray:
        first = len(imei_strs)
        tac = rng.integers(35_000_000, 36_000_000, count)
        ser = rng.integers(0, 1_000_000, count)
        for t, s in zip(tac.tolist(), ser.tolist(), strict=False):
            body = f"{t:08d}{s:06d}"
            imei_strs.append(body + _luhn_digit(body))
        return np.arange(first, first + count)

    imei_strs: list[str] = []
    imei_old = new_imeis(n)
    imei_new = imei_old.copy()
    change_day = np.full(n, days + 1, dtype=np.int64)
    cells = rng.integers(10_000, 99_999, (n, 3))
    away_cell = rng.integers(10_000, 99_999, n)

    # --- per-archetype timelines
    act = np.ones((n, days), dtype=np.float32)
    status = np.zeros((n, days), dtype=np.int8)
    shadow = np.full(n, -1, dtype=np.int64)
    shadow_s = np.zeros((n, days), dtype=np.float32)
    boost = np.zeros((n, days), dtype=np.float32)
    rival = np.full(n, -1, dtype=np.int64)
    quiet = np.zeros((n, days), dtype=bool)
    notes: list[list[str]] = [[] for _ in range(n)]
    churn_day = np.full(n, -1, dtype=np.int64)
    stop_day = np.full(n, -1, dtype=np.int64)
    recharge_until = np.full(n, days + 10, dtype=np.int64)  # recharge while day <= this
    recharge_pause = np.zeros((n, days), dtype=bool)
    specials: dict[int, list[tuple]] = {}
    dd = np.arange(days)

    baseline = min(BASELINE_DAYS, max(days // 2 - 7, 1))  # 35 for periods of 84 days and more
    churn_lo = min(max(days // 2, baseline + 14), max(days - 2, 0))
    churn_hi = max(days - 2, churn_lo)

    def churn_at() -> int:
        return int(rng.integers(churn_lo, churn_hi + 1))

    def add_special(day: int, sub: int, peer: int, op: int, kind: int) -> None:
        if 0 <= day < days:
            specials.setdefault(day, []).append((sub, peer, op, kind))

    handdown_used: set[int] = set()

    def handdown(donor: int, day: int) -> None:
        """Donor's old handset goes to a close own contact: that contact's IMEI becomes it."""
        r = closest_own(donor, handdown_used | {donor})
        if r < 0 or change_day[r] <= days or arche[r] != A["loyal"]:
            return
        hd = day + int(rng.integers(1, 10))
        if hd >= days:
            return
        handdown_used.add(r)
        handdown_used.add(donor)
        imei_new[r] = imei_old[donor]
        change_day[r] = hd
        notes[donor].append(f"handdown_to={numbers[r]}@{hd}")
        notes[r].append(f"handdown_from={numbers[donor]}@{hd}")

    loyal_idx = np.flatnonzero(arche == A["loyal"])
    # everyone's usage drifts a little over the period (loyal and migrants: the non-churners)
    steady = np.flatnonzero((arche == A["loyal"]) | (arche == A["seasonal_migrant"]))
    slope = rng.normal(0.0, LOYAL_TREND_SD_PER_DAY, steady.size)
    act[steady] *= np.exp(np.outer(slope, dd)).astype(np.float32)
    lv = rng.random(loyal_idx.size)
    for i in loyal_idx[lv < HOLIDAY_SHARE].tolist():
        L = int(rng.integers(5, 10))
        h = int(rng.integers(5, days - L - 6)) if days > L + 12 else 0  # back for at least 6 days
        act[i, h : h + L] *= 0.05
        notes[i].append(f"holiday={h}-{min(h + L, days) - 1}")
    for i in loyal_idx[(lv >= HOLIDAY_SHARE) & (lv < HOLIDAY_SHARE + HANDSET_SHARE)].tolist():
        if i in handdown_used:
            continue
        cd = int(rng.integers(min(3, days - 1), max(days - 2, 4)))
        imei_new[i] = new_imeis(1)[0]
        change_day[i] = cd
        notes[i].append(f"handset_change={cd}")
        if rng.random() < HANDDOWN_SHARE:
            handdown(i, cd)
    lv2 = rng.random(loyal_idx.size)
    for i in loyal_idx[lv2 < DUAL_OWN_SIM_SHARE].tolist():
        r = closest_own(i, handdown_used | {i})
        if r < 0 or change_day[r] <= days or change_day[i] <= days or arche[r] != A["loyal"]:
            continue
        handdown_used.update((i, r))
        imei_old[r] = imei_old[i]
        imei_new[r] = imei_old[i]
        notes[i].append(f"dual_own_sim={numbers[r]}")
        notes[r].append(f"dual_own_sim={numbers[i]}")
    for i in loyal_idx[(lv2 >= DUAL_OWN_SIM_SHARE) & (lv2 < DUAL_OWN_SIM_SHARE + LOYAL_RIVAL_HOTLINE_SHARE)].tolist():
        op = "cu" if rng.random() < 0.55 else "ct"
        hd = int(rng.integers(0, days))
        add_special(hd, i, hotline_ids[op], 1 if op == "cu" else 2, _CALL)
        notes[i].append(f"rival_hotline={hd}:{_HOTLINE_OF[op]}")

    # switchers
    sw_idx = np.flatnonzero(arche == A["switcher"])
    for i in sw_idx.tolist():
        C = churn_at()
        S = max(min(baseline, C - 7), C - int(rng.integers(21, 43)))
        S2 = min(S + int(rng.integers(0, 8)), max(C - 5, S))
        op = "cu" if rng.random() < 0.55 else "ct"
        opc = 1 if op == "cu" else 2
        rival[i] = opc
        sh = add_numbers(_unique_numbers(rng, cu_p if op == "cu" else ct_p, 1, taken), opc)[0]
        shadow[i] = sh
        s = np.clip((dd - S2 + 1) / max(C - S2, 1), 0.0, 1.0).astype(np.float32)
        s[dd < S2] = 0.0
        s[dd >= C] = 1.0
        shadow_s[i] = s
        a = 1.0 - 0.9 * s**0.8
        a[(dd >= S) & (dd < S2)] = 0.93
        a[dd >= C] = 0.0
        act[i] = a
        status[i, C:] = 2
        boost[i] = np.where(
            (dd >= S) & (dd < C), 0.6 * (1.0 - 0.7 * s), 0.0
        )  # asking around, then on-net via the new SIM
        if rival_peers[i, 0] < 0:
            rival_peers[i] = new_external(3)
        churn_day[i] = C
        recharge_until[i] = S2 + 7
        notes[i] += [f"ramp_start={S}", f"shadow_from={S2}", f"rival={op}"]
        if rng.random() < SWITCHER_HOTLINE_SHARE:
            hds = sorted({int(rng.integers(S2, max(C - 2, S2 + 1))) for _ in range(1 + int(rng.random() < 0.4))})
            for hd in hds:
                add_special(hd, i, hotline_ids[op], opc, _CALL)
            notes[i].append("hotline=" + ",".join(f"{hd}:{_HOTLINE_OF[op]}" for hd in hds))
        if rng.random() < SWITCHER_DUAL_SIM_HANDSET_SHARE and i not in handdown_used:
            imei_new[i] = new_imeis(1)[0]
            change_day[i] = S2
            notes[i].append(f"dual_sim_handset={S2}")
            if rng.random() < HANDDOWN_SHARE:
                handdown(i, S2)

    for i in np.flatnonzero(arche == A["silent_porter"]).tolist():
        C = churn_at()
        act[i, C:] = 0.0
        status[i, C:] = 1
        rival[i] = 1 if rng.random() < 0.55 else 2
        churn_day[i] = C
        stop_day[i] = C
        notes[i].append(f"ported_to={_OP_NAMES[rival[i]]}")

    for i in np.flatnonzero(arche == A["seasonal_migrant"]).tolist():
        L = int(rng.integers(21, 36))
        lo = min(max(days // 2 - 14, baseline), max(days - L - 7, 0))
        hi = max(days - L - 7, lo)
        Q = int(rng.integers(lo, hi + 1))
        act[i, Q : Q + L] = 0.04
        quiet[i, Q : Q + L] = True
        recharge_pause[i, Q : Q + L] = True
        notes[i].append(f"quiet={Q}-{min(Q + L, days) - 1}")

    for i in np.flatnonzero(arche == A["drifter"]).tolist():
        C = churn_at()
        S = max(min(baseline, C - 7), C - int(rng.integers(30, 61)))
        frac = np.clip((C - dd) / max(C - S, 1), 0.0, 1.0)
        act[i] = np.where(dd < S, 1.0, frac**1.3)
        act[i, C:] = 0.0
        status[i, C:] = 2
        churn_day[i] = C
        notes[i].append(f"decay_from={S}")

    # recharges (prepaid): usual interval per subscriber, amount from ARPU
    interval = rng.choice([7, 10, 14, 30], n, p=[0.2, 0.15, 0.3, 0.35])
    lap_idx = np.flatnonzero(arche == A["prepaid_lapser"])
    lapser_C = {}
    for i in lap_idx.tolist():
        C = churn_at()
        G = max(1, min(int(rng.integers(10, 21)), C - baseline))  # decline (balance running out -> suspension)
        E = C - G  # expected next recharge never happens; balance runs dry from about here
        R = E - int(interval[i])  # the last recharge is about one interval before E
        recharge_until[i] = R
        lapser_C[i] = (C, E)
        a = np.ones(days, dtype=np.float32)
        dec = (dd >= E) & (dd < C)
        a[dec] = np.clip(1.0 - (dd[dec] - E + 1) / G, 0.05, 1.0)
        a[dd >= C] = 0.0
        act[i] = a
        status[i, C:] = 2
        churn_day[i] = C

    recharges: dict[int, list[tuple]] = {}
    last_recharge = np.full(n, -1, dtype=np.int64)
    for i in np.flatnonzero(prepaid).tolist():
        I = int(interval[i])
        amt_choices = np.array([10, 20, 30, 50, 100, 200])
        want = float(arpu[i]) * I / 30.0
        amount = int(amt_choices[np.argmin(np.abs(amt_choices - want))])
        ch = int(rng.integers(0, len(_CHANNELS)))
        if arche[i] == A["prepaid_lapser"]:
            # the schedule runs backwards from the last recharge, so that it really is the last one
            sched = [int(recharge_until[i])]
            while sched[-1] - I - 1 >= 0:
                sched.append(sched[-1] - I - int(rng.integers(-1, 3)))
            sched = [d for d in reversed(sched) if 0 <= d < days]
        else:
            sched = []
            d = int(rng.integers(0, I))
            while d < days:
                sched.append(d)
                d += I + int(rng.integers(-1, 3))
        for d in sched:
            ok = d <= recharge_until[i] and act[i, d] > 0 and not recharge_pause[i, d]
            if arche[i] == A["drifter"]:
                ok = ok and rng.random() < max(float(act[i, d]), 0.0) ** 0.5
            if ok:
                recharges.setdefault(d, []).append((i, amount, ch))
                last_recharge[i] = d
        notes[i].append(f"recharge_every={I}")
        if arche[i] == A["prepaid_lapser"]:
            notes[i].append(f"last_recharge={last_recharge[i]}")

    # profiles at the start, and a few updates
    def profile(i: int, ts: int, arpu_v: float) -> dict:
        return {
            "type": "profile",
            "msisdn": numbers[i],
            "ts": ts,
            "plan": "prepaid" if prepaid[i] else "postpaid",
            "activated": (start_date - _dt.timedelta(days=int(tenure[i]))).isoformat(),
            "arpu": float(arpu_v),
            "key_group_member": bool(key_group[i]),
        }

    profiles0 = [profile(i, start_ts, arpu[i]) for i in range(n)]
    profile_updates: dict[int, list[dict]] = {}
    for i in np.flatnonzero(rng.random(n) < 0.02).tolist():
        d = int(rng.integers(1, max(days, 2)))
        if d < days and act[i, d] > 0:
            p = profile(
                i,
                start_ts + d * DAY_S + int(rng.integers(3600 * 9, 3600 * 18)),
                round(float(arpu[i]) * rng.uniform(0.8, 1.2), 1),
            )
            profile_updates.setdefault(d, []).append(p)
            notes[i].append(f"profile_update={d}")

    truth = []
    for i in range(n):
        cd = int(churn_day[i])
        truth.append(
            {
                "msisdn": numbers[i],
                "archetype": ARCHETYPES[arche[i]],
                "churn_day": "" if cd < 0 else cd,
                "churn_ts": "" if cd < 0 else start_ts + cd * DAY_S,
                "stop_day": "" if stop_day[i] < 0 else int(stop_day[i]),
                "plan": "prepaid" if prepaid[i] else "postpaid",
                "arpu": float(arpu[i]),
                "tenure": int(tenure[i]),
                "second_sim": numbers[shadow[i]] if shadow[i] >= 0 else "",
                "notes": ";".join(notes[i]),
            }
        )

    return _World(
        n=n,
        days=days,
        start_ts=start_ts,
        numbers=numbers,
        num_op=np.asarray(num_op, dtype=np.int8),
        arche=arche,
        act=act,
        status=status,
        shadow=shadow,
        shadow_s=shadow_s,
        rival=rival,
        boost=boost,
        rival_peers=rival_peers,
        base_call=base_call,
        base_sms=base_sms,
        base_in=base_in,
        indptr=indptr,
        c_peer=peer_all,
        c_cum=c_cum,
        c_cum0=c_cum0,
        c_tot=c_tot,
        imei_strs=imei_strs,
        imei_old=imei_old,
        imei_new=imei_new,
        change_day=change_day,
        cells=cells,
        away_cell=away_cell,
        quiet=quiet,
        specials=specials,
        recharges=recharges,
        profiles0=profiles0,
        profile_updates=profile_updates,
        truth=truth,
        service0=int(service_ids[0]),
    )


# ----------------------------------------------------------------------------- the day loop

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


def _simulate_day(w: _World, rng: np.random.Generator, d: int) -> dict[str, np.ndarray]:
    n = w.n
    day_ts = w.start_ts + d * DAY_S
    buf = _Buf()
    weekday = _dt.datetime.fromtimestamp(day_ts + TZ_OFFSET_S, tz=_dt.UTC).weekday()
    a = w.act[:, d] * _WEEKDAY_FACTOR[weekday] * rng.gamma(6.0, 1 / 6.0, n)
    imei_today = np.where(d >= w.change_day, w.imei_new, w.imei_old)
    cell_pick = w.cells[np.arange(n), rng.choice(3, n, p=[0.6, 0.3, 0.1])]
    cell_today = np.where(w.quiet[:, d], w.away_cell, cell_pick)
    status_d = w.status[:, d]
    act_d = w.act[:, d]
    s_d = w.shadow_s[:, d]

    def cell_of(subs: np.ndarray) -> np.ndarray:
        return cell_today[subs]

    for kind, base in ((_CALL, w.base_call), (_SMS, w.base_sms)):
        # outgoing person-to-person traffic of our subscribers
        cnt = rng.poisson(base * a)
        who = np.repeat(np.arange(n), cnt)
        peer = _pick_contacts(w, rng, who)
        k = who.size
        ts = _times(rng, day_ts, k)
        dur = _durations(rng, k) if kind == _CALL else np.zeros(k, dtype=np.int64)
        op = w.num_op[peer].astype(np.int8)
        keep = np.ones(k, dtype=bool)
        pop = peer < n
        pj = np.where(pop, peer, 0)
        # callee inside the population: presence thinning, porting and migration to the shadow
        u = rng.random(k)
        active_peer = pop & (status_d[pj] == 0)
        accepted = active_peer & (u < np.minimum(1.0, act_d[pj]))
        ported = pop & (status_d[pj] == 1)
        keep_ported = ported & (u < 0.7)
        has_shadow = pop & (w.shadow[pj] >= 0)
        redirect = has_shadow & ~accepted & (rng.random(k) < np.where(status_d[pj] == 2, 0.9, s_d[pj]))
        peer = np.where(redirect, w.shadow[pj], peer)
        op = np.where(redirect, w.rival[pj], op).astype(np.int8)
        op = np.where(keep_ported, w.rival[pj], op).astype(np.int8)
        keep &= ~pop | accepted | keep_ported | redirect
        if kind == _SMS:  # nobody texts the bank or the care line
            keep &= (op != _OP_NONE) & (peer != w.service0)
        who, peer, op, ts, dur = who[keep], peer[keep], op[keep], ts[keep], dur[keep]
        mirror_ok = accepted[keep] & ~redirect[keep]  # both sides ours and on the network: the callee's "in" CDR
        if kind == _CALL:
            buf.add(
                kind=kind, sub=who, dir=0, peer=peer, op=op, ts=ts, dur=dur, imei=imei_today[who], cell=cell_of(who)
            )
            mj = peer[mirror_ok]
            buf.add(
                kind=kind,
                sub=mj,
                dir=1,
                peer=who[mirror_ok],
                op=0,
                ts=ts[mirror_ok],
                dur=dur[mirror_ok],
                imei=imei_today[mj],
                cell=cell_of(mj),
            )
        else:
            buf.add(kind=kind, sub=who, dir=0, peer=peer, op=op, ts=ts)
            buf.add(kind=kind, sub=peer[mirror_ok], dir=1, peer=who[mirror_ok], op=0, ts=ts[mirror_ok])

        # incoming traffic from outside numbers (competitor contacts, own numbers outside the population)
        cnt = rng.poisson(base * a * 0.9)
        who = np.repeat(np.arange(n), cnt)
        peer = _pick_contacts(w, rng, who)
        op = w.num_op[peer]
        keep = (peer >= n) & (op != _OP_NONE)
        who, peer, op = who[keep], peer[keep], op[keep]
        k = who.size
        ts = _times(rng, day_ts, k)
        if kind == _CALL:
            buf.add(
                kind=kind,
                sub=who,
                dir=1,
                peer=peer,
                op=op,
                ts=ts,
                dur=_durations(rng, k),
                imei=imei_today[who],
                cell=cell_of(who),
            )
        else:
            buf.add(kind=kind, sub=who, dir=1, peer=peer, op=op, ts=ts)

        # the switchers' shadow numbers reaching their close contacts (our contacts' "in" events)
        sw = np.flatnonzero(s_d > 0)
        if sw.size:
            cnt = rng.poisson(base[sw] * s_d[sw] * 1.1)
            owner = np.repeat(sw, cnt)
            contact = _pick_contacts(w, rng, owner)
            ok = contact < n
            cj = np.where(ok, contact, 0)
            ok &= (status_d[cj] == 0) & (rng.random(contact.size) < np.minimum(1.0, act_d[cj]))
            owner, contact = owner[ok], contact[ok]
            k = owner.size
            ts = _times(rng, day_ts, k)
            if kind == _CALL:
                buf.add(
                    kind=kind,
                    sub=contact,
                    dir=1,
                    peer=w.shadow[owner],
                    op=w.rival[owner],
                    ts=ts,
                    dur=_durations(rng, k),
                    imei=imei_today[contact],
                    cell=cell_of(contact),
                )
            else:
                buf.add(kind=kind, sub=contact, dir=1, peer=w.shadow[owner], op=w.rival[owner], ts=ts)

    # switchers: extra calls to competitor peers during the ramp
    bz = np.flatnonzero(w.boost[:, d] > 0)
    if bz.size:
        cnt = rng.poisson(w.boost[bz, d])
        who = np.repeat(bz, cnt)
        peer = w.rival_peers[who, rng.integers(0, 3, who.size)]
        k = who.size
        buf.add(
            kind=_CALL,
            sub=who,
            dir=0,
            peer=peer,
            op=w.num_op[peer],
            ts=_times(rng, day_ts, k),
            dur=_durations(rng, k),
            imei=imei_today[who],
            cell=cell_of(who),
        )

    # scheduled specials (care-line calls)
    for sub, peer, op, kind in w.specials.get(d, ()):
        t = int(_times(rng, day_ts, 1, _BUSINESS_P)[0])
        dur = int(np.clip(rng.lognormal(np.log(240), 0.6), 20, 3600))
        buf.add(
            kind=kind,
            sub=np.array([sub]),
            dir=0,
            peer=peer,
            op=op,
            ts=t,
            dur=dur,
            imei=imei_today[sub],
            cell=cell_today[sub],
        )

    # own care line: occasional calls to 10086 happen through the service contacts above.
    rc = w.recharges.get(d)
    if rc:
        subs = np.array([r[0] for r in rc], dtype=np.int64)
        buf.add(
            kind=_RECHARGE,
            sub=subs,
            dir=0,
            peer=-1,
            op=-1,
            ts=_times(rng, day_ts, subs.size, _BUSINESS_P),
            amount=np.array([r[1] for r in rc]),
            chan=np.array([r[2] for r in rc]),
        )
    return buf.columns()


def _malformed_variant(rng: np.random.Generator, line: bytes) -> bytes:
    r = rng.integers(0, 5)
    if r == 0:  # truncated JSON
        return line[: max(1, len(line) // 2)]
    if r == 1:  # missing a required field
        return re.sub(rb'"ts":[0-9]+,', b"", line, count=1) if b'"ts":' in line else line[:-1] + b',"x":}'
    if r == 2:  # bad type: duration as a string / ts as a date string
        if b'"duration_s":' in line:
            return re.sub(rb'"duration_s":([0-9]+)', rb'"duration_s":"\1s"', line, count=1)
        return re.sub(rb'"ts":([0-9]+)', rb'"ts":"2026-01-05T08:00:00"', line, count=1)
    if r == 3:  # not UTF-8
        return line[:20] + b"\xff\xfe" + line[20:]
    return line.replace(b'"msisdn":"', b'"msisdn":', 1)  # broken quoting


def _encode(w: _World, cols: dict[str, np.ndarray], order: np.ndarray) -> list[tuple[int, bytes, bytes]]:
    """JSON lines for the rows ``order`` (digits and fixed vocabularies only: no escaping needed)."""
    nums = w.numbers
    imeis = w.imei_strs
    if w.keys is None:
        w.keys = [m.encode() for m in nums[: w.n]]
    keys = w.keys
    kind_l = cols["kind"][order].tolist()
    sub_l = cols["sub"][order].tolist()
    dir_l = cols["dir"][order].tolist()
    peer_l = cols["peer"][order].tolist()
    op_l = cols["op"][order].tolist()
    ts_l = cols["ts"][order].tolist()
    dur_l = cols["dur"][order].tolist()
    imei_l = cols["imei"][order].tolist()
    cell_l = cols["cell"][order].tolist()
    amt_l = cols["amount"][order].tolist()
    chan_l = cols["chan"][order].tolist()
    dirs = ("out", "in")
    opf_of = {o: f',"peer_operator":"{_OP_NAMES[o]}"' for o in range(len(_OP_NAMES))}
    opf_of[_OP_NONE] = ""
    lines = []
    append = lines.append
    for j in range(len(kind_l)):
        k = kind_l[j]
        if k == 0:
            im = imei_l[j]
            append(
                f'{{"type":"call","msisdn":"{nums[sub_l[j]]}","ts":{ts_l[j]},"direction":"{dirs[dir_l[j]]}","peer":"{nums[peer_l[j]]}",'
                f'"duration_s":{dur_l[j]}{opf_of[op_l[j]]}'
                + (f',"imei":"{imeis[im]}"' if im >= 0 else "")
                + f',"cell_id":"46000-{cell_l[j]}"}}'
            )
        elif k == 1:
            append(
                f'{{"type":"sms","msisdn":"{nums[sub_l[j]]}","ts":{ts_l[j]},"direction":"{dirs[dir_l[j]]}","peer":"{nums[peer_l[j]]}"{opf_of[op_l[j]]}}}'
            )
        else:  # recharge
            append(
                f'{{"type":"recharge","msisdn":"{nums[sub_l[j]]}","ts":{ts_l[j]},"amount":{amt_l[j]},"channel":"{_CHANNELS[chan_l[j]]}"}}'
            )
    if not lines:
        return []
    vals = "\n".join(lines).encode().split(b"\n")  # one encode for the whole day
    return list(zip(kind_l, [keys[i] for i in sub_l], vals, strict=False))


def _iter_records(w: _World, seed: int, malformed_rate: float, late: bool) -> Iterator[tuple[int, bytes, bytes, bool]]:
    """(kind, key, value, malformed) in arrival order."""
    rng = np.random.default_rng([seed, 1])
    mrng = np.random.default_rng([seed, 2])
    for p in w.profiles0:
        yield _PROFILE, p["msisdn"].encode(), orjson.dumps(p), False
    pend: dict[str, np.ndarray] | None = None
    pend_arr = np.empty(0, dtype=np.int64)
    for d in range(w.days + 2):
        if d < w.days:
            cols = _simulate_day(w, rng, d)
            k = cols["kind"].size
            arr = cols["ts"] + (_lateness(rng, k) if late else 0)
            prof = w.profile_updates.get(d, [])
        else:
            cols, arr, prof = None, np.empty(0, dtype=np.int64), []
        if pend is not None:
            cols = pend if cols is None else {c: np.concatenate([pend[c], cols[c]]) for c in _COLS}
            arr = np.concatenate([pend_arr, arr])
        if cols is None:
            break
        horizon = w.start_ts + (d + 1) * DAY_S if d < w.days else np.iinfo(np.int64).max
        due = arr < horizon
        order = np.flatnonzero(due)
        order = order[np.argsort(arr[order], kind="stable")]
        rest = np.flatnonzero(~due)
        pend = {c: cols[c][rest] for c in _COLS} if rest.size else None
        pend_arr = arr[rest]
        recs = _encode(w, cols, order)
        if prof:  # profile updates: insert at their arrival position
            parr = arr[order]
            for p in prof:
                pos = int(np.searchsorted(parr, p["ts"] + 30))
                recs.insert(pos, (_PROFILE, p["msisdn"].encode(), orjson.dumps(p)))
                parr = np.insert(parr, pos, p["ts"] + 30)
        bad = set()
        if malformed_rate > 0 and recs:
            nbad = int(mrng.binomial(len(recs), min(malformed_rate, 1.0)))
            bad = set(mrng.integers(0, len(recs), nbad).tolist())
        for j, (kind, key, val) in enumerate(recs):
            yield kind, key, val, False
            if j in bad:
                yield _CALL, key, _malformed_variant(mrng, val), True
        if d >= w.days and pend is None:
            break


def generate(
    n_subscribers: int,
    days: int = 90,
    seed: int = 0,
    *,
    start: str = DEFAULT_START,
    fmt: str = "bytes",
    malformed_rate: float = 0.0005,
    late: bool = True,
    mix: dict[str, float] | None = None,
) -> tuple[Iterator, list[dict]]:
    """Plan a population and return ``(events, truth)``; see the module docstring.

    ``events`` is lazy (memory: one day of events plus the late carry-over); ``truth`` is the
    ground-truth rows (dicts with ``TRUTH_FIELDS``), available before iterating.
    """
    if fmt not in ("bytes", "dict", "records"):
        raise ValueError("fmt must be 'bytes', 'dict' or 'records'")
    w = _plan(n_subscribers, days, seed, start, mix or DEFAULT_MIX)
    recs = _iter_records(w, seed, malformed_rate, late)
    if fmt == "bytes":
        it: Iterator = (v for _, _, v, _ in recs)
    elif fmt == "records":
        it = ((TOPIC_KINDS[k], key, v) for k, key, v, _ in recs)
    else:
        it = ((v if bad else orjson.loads(v)) for _, _, v, bad in recs)
    return it, w.truth


# ----------------------------------------------------------------------------- truth file


def write_truth(path: str | Path, truth: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        wr = csv.DictWriter(f, fieldnames=TRUTH_FIELDS)
        wr.writeheader()
        wr.writerows(truth)


def read_truth(path: str | Path) -> list[dict]:
    """Read a truth CSV; ``churn_day``/``churn_ts``/``stop_day`` become int or None."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            for k in ("churn_day", "churn_ts", "stop_day", "tenure"):
                r[k] = int(r[k]) if r.get(k) not in (None, "") else None
            r["arpu"] = float(r["arpu"]) if r.get("arpu") not in (None, "") else None
            rows.append(r)
    return rows


# ----------------------------------------------------------------------------- Kafka sink

_MSISDN_RE = re.compile(rb"86[0-9]{11}")


def _as_record(item, last_key: bytes) -> tuple[str, bytes, bytes]:
    if isinstance(item, tuple):
        return item
    if isinstance(item, dict):
        kind = {"call": "calls", "sms": "sms", "recharge": "recharges", "profile": "profiles"}[item["type"]]
        return kind, str(item["msisdn"]).encode(), orjson.dumps(item)
    try:
        obj = orjson.loads(item)
        kind = {"call": "calls", "sms": "sms", "recharge": "recharges", "profile": "profiles"}[obj["type"]]
        return kind, str(obj["msisdn"]).encode(), bytes(item)
    except Exception:  # malformed: calls topic, a plausible key
        m = _MSISDN_RE.search(item)
        return "calls", (m.group(0) if m else last_key), bytes(item)


async def ensure_topics(settings, topics: Iterable[str]) -> list[str]:
    """Create the missing topics with ``settings.partitions`` partitions; returns those created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if not missing:
            return []
        try:
            brokers = len((await admin.describe_cluster())["brokers"])
        except Exception:
            brokers = 1
        rf = max(1, min(3, brokers))
        try:
            await admin.create_topics(
                [NewTopic(t, num_partitions=settings.partitions, replication_factor=rf) for t in missing]
            )
        except TopicAlreadyExistsError:
            pass
        # wait (briefly) until every new partition has a leader, so the first sends are not refused
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                desc = await admin.describe_topics(missing)
                ready = all(
                    t.get("error_code", 0) == 0
                    and len(t.get("partitions", [])) == settings.partitions
                    and all(p.get("leader", -1) >= 0 for p in t["partitions"])
                    for t in desc
                )
            except Exception:  # metadata not there yet
                ready = False
            if ready:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the broker applies the new metadata a moment after the controller
        return missing
    finally:
        await admin.close()


async def produce_to_kafka(
    events: Iterable,
    settings=None,
    rate: float = 0.0,
    progress: bool = True,
    stop_event: asyncio.Event | None = None,
    total: int | None = None,
) -> int:
    """Send simulator events to the input topics (topic by type, key = msisdn); returns the count.

    ``events``: records ``(topic_kind, key, value)`` (``generate(fmt="records")``), raw JSON
    lines or event dicts. Malformed lines go to the calls topic with a plausible key. ``rate``
    events/s (0 = as fast as possible); ``stop_event`` ends early when set. Missing topics are
    created first with ``settings.partitions`` partitions.
    """
    from aiokafka import AIOKafkaProducer

    from ...settings import Settings
    from ..progress import Progress

    settings = settings or Settings.from_env()
    topic_of = {
        "calls": settings.topic_calls,
        "sms": settings.topic_sms,
        "recharges": settings.topic_recharges,
        "profiles": settings.topic_profiles,
    }
    await ensure_topics(settings, topic_of.values())
    producer = AIOKafkaProducer(
        **settings.kafka_client_kwargs(), linger_ms=20, max_batch_size=512 * 1024, acks="all", enable_idempotence=False
    )
    await producer.start()
    sent = 0
    t0 = time.monotonic()
    last_key = b"8613800000000"
    pending: list = []
    bar = Progress(total, "events", enabled=None if progress else False)
    try:
        for item in events:
            if stop_event is not None and stop_event.is_set():
                break
            kind, key, value = _as_record(item, last_key)
            last_key = key
            pending.append(await producer.send(topic_of[kind], value=value, key=key))
            sent += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
                bar.update(2000)
                if stop_event is not None and stop_event.is_set():
                    break
            if rate > 0 and sent % max(1, min(200, int(rate // 10) or 1)) == 0:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    if pending:
                        await asyncio.gather(*pending)
                        bar.update(len(pending))
                        pending.clear()
                    await asyncio.sleep(ahead)
        if pending:
            await asyncio.gather(*pending)
            bar.update(len(pending))
        await producer.flush()
    finally:
        bar.close()
        await producer.stop()
    return sent


# ----------------------------------------------------------------------------- CLI


def _tee(records: Iterable[tuple[str, bytes, bytes]], f) -> Iterator[tuple[str, bytes, bytes]]:
    for rec in records:
        f.write(rec[2] + b"\n")
        yield rec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subscribers", type=int, default=10_000, help="population size (default 10000)")
    p.add_argument("--days", type=int, default=90, help="simulated days (default 90)")
    p.add_argument("--seed", type=int, default=1, help="random seed (deterministic output)")
    p.add_argument("--start", default=DEFAULT_START, help=f"day 0 as a local (UTC+8) date, default {DEFAULT_START}")
    p.add_argument(
        "--out", help="write events as NDJSON to this file ('-' = stdout); with --kafka, a copy of what was sent"
    )
    p.add_argument("--truth", help="write the ground-truth CSV to this file")
    p.add_argument("--kafka", action="store_true", help="produce to the Kafka input topics (KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--rate", type=float, default=0.0, help="events per second with --kafka (0 = as fast as possible)")
    p.add_argument(
        "--malformed-rate", type=float, default=0.0005, help="share of malformed lines (default 0.0005, 0 disables)"
    )
    p.add_argument("--no-late", action="store_true", help="no arrival lateness (events in event-time order)")


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.kafka and not args.truth:
        print("simulate: give --out FILE and/or --truth FILE, or --kafka", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    fmt = "records" if args.kafka else "bytes"
    events, truth = generate(
        args.subscribers,
        args.days,
        args.seed,
        start=args.start,
        fmt=fmt,
        malformed_rate=args.malformed_rate,
        late=not args.no_late,
    )
    if args.truth:
        write_truth(args.truth, truth)
    n = 0
    if args.kafka:
        from ...settings import Settings

        settings = Settings.from_env()
        tee = None
        if args.out:  # also keep a copy of exactly what was sent
            tee = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")
            events = _tee(events, tee)
        try:
            n = asyncio.run(produce_to_kafka(events, settings, rate=args.rate, progress=True))
        finally:
            if tee is not None and tee is not sys.stdout.buffer:
                tee.close()
    elif args.out:
        from ..progress import Progress

        f = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")
        try:
            with Progress(None, "events") as bar:
                chunk: list[bytes] = []
                for line in events:
                    chunk.append(line)
                    if len(chunk) >= 50_000:
                        f.write(b"\n".join(chunk) + b"\n")
                        n += len(chunk)
                        bar.update(len(chunk))
                        chunk.clear()
                if chunk:
                    f.write(b"\n".join(chunk) + b"\n")
                    n += len(chunk)
                    bar.update(len(chunk))
        finally:
            if f is not sys.stdout.buffer:
                f.close()
    churners = sum(1 for r in truth if r["churn_day"] != "")
    print(
        f"simulate: {len(truth)} subscribers, {args.days} days, {n} events, {churners} churners, "
        f"{time.monotonic() - t0:.1f}s",
        file=sys.stderr,
    )
    return 0
