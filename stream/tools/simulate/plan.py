"""The population plan: numbers, archetypes, call graph, handsets and every subscriber's timeline,
drawn up front from one seeded generator (the day loop in ``days.py`` only reads the result)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np

from ...operators import DEFAULT_COMPETITOR_HOTLINES, DEFAULT_PREFIXES
from .profile import ARCHETYPES, Profile

CHURN_ARCHETYPES = ("switcher", "silent_porter", "drifter", "prepaid_lapser")
DEFAULT_START = "2026-01-05"  # a Monday
TZ_OFFSET_S = 8 * 3600
DAY_S = 86400
BASELINE_DAYS = 35
# The behavioural constants (archetype mix, rates, cadences, lengths, shares) are a ``Profile``.

# event kinds in the columnar day buffers (same codes as stream.contract KIND_*)
_CALL, _SMS, _RECHARGE, _PROFILE = 0, 1, 2, 3
# operator codes
_OP_NAMES = ("own", "cu", "ct")
_OP_NONE = -1
_SERVICES = (("10086", 0), ("95588", _OP_NONE), ("95533", _OP_NONE), ("95555", _OP_NONE), ("12306", _OP_NONE))
_HOTLINE_OF = {v: k for k, v in DEFAULT_COMPETITOR_HOTLINES.items()}  # "cu" -> "10010"
_CHANNELS = ("app", "card", "retail", "bank", "wechat")
_PREFIXES_OF = {op: [p for p, o in DEFAULT_PREFIXES.items() if o == op] for op in _OP_NAMES}
_A = {a: i for i, a in enumerate(ARCHETYPES)}  # archetype -> index


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
    profile: Profile
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


def _communities(
    rng: np.random.Generator, n: int, prof: Profile
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Communities with heavy-tailed sizes: (members, start of each in members, sizes, community of each)."""
    sizes: list[int] = []
    median, sigma = prof.community_size
    while sum(sizes) < n:
        sizes.append(int(np.clip(rng.lognormal(np.log(median), sigma), 5, prof.community_max)))
    sizes[-1] -= sum(sizes) - n
    sizes = [s for s in sizes if s > 0]
    members = rng.permutation(n)
    comm_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    comm_size = np.array(sizes)
    comm_of = np.empty(n, dtype=np.int64)
    comm_of[members] = np.repeat(np.arange(len(sizes)), sizes)
    return members, comm_start, comm_size, comm_of


class _Planner:
    """Draws the plan phase by phase (the order of the draws from ``rng`` is the seed's contract)."""

    def __init__(self, n: int, days: int, seed: int, start: str, prof: Profile) -> None:
        self.n, self.days, self.prof = n, days, prof
        self.rng = np.random.default_rng(seed)
        self.start_ts = simulation_start_ts(start)
        self.start_date = _dt.date.fromisoformat(start)
        self.taken: set[str] = set()
        # numbers: our population first
        self.numbers = _unique_numbers(self.rng, _PREFIXES_OF["own"], n, self.taken)
        self.num_op: list[int] = [0] * n
        self.service_ids = self.add_numbers([s for s, _ in _SERVICES], _OP_NONE)
        self.num_op[self.service_ids[0]] = 0  # 10086 is ours
        self.hotline_ids = {op: self.add_numbers([_HOTLINE_OF[op]], 1 if op == "cu" else 2)[0] for op in ("cu", "ct")}
        self.imei_strs: list[str] = []
        # per-archetype timelines
        self.act = np.ones((n, days), dtype=np.float32)
        self.status = np.zeros((n, days), dtype=np.int8)
        self.shadow = np.full(n, -1, dtype=np.int64)
        self.shadow_s = np.zeros((n, days), dtype=np.float32)
        self.boost = np.zeros((n, days), dtype=np.float32)
        self.rival = np.full(n, -1, dtype=np.int64)
        self.quiet = np.zeros((n, days), dtype=bool)
        self.notes: list[list[str]] = [[] for _ in range(n)]
        self.churn_day = np.full(n, -1, dtype=np.int64)
        self.stop_day = np.full(n, -1, dtype=np.int64)
        self.recharge_until = np.full(n, days + 10, dtype=np.int64)  # recharge while day <= this
        self.recharge_pause = np.zeros((n, days), dtype=bool)
        self.specials: dict[int, list[tuple]] = {}
        self.dd = np.arange(days)
        self.baseline = min(BASELINE_DAYS, max(days // 2 - 7, 1))  # 35 for periods of 84 days and more
        self.churn_lo = min(max(days // 2, self.baseline + 14), max(days - 2, 0))
        self.churn_hi = max(days - 2, self.churn_lo)
        self.handdown_used: set[int] = set()

    # ------------------------------------------------------------------ helpers
    def add_numbers(self, nums: list[str], op: int) -> np.ndarray:
        first = len(self.numbers)
        self.numbers.extend(nums)
        self.num_op.extend([op] * len(nums))
        return np.arange(first, first + len(nums))

    def new_numbers(self, op: str, count: int) -> np.ndarray:
        return self.add_numbers(_unique_numbers(self.rng, _PREFIXES_OF[op], count, self.taken), _OP_NAMES.index(op))

    def new_external(self, count: int) -> np.ndarray:
        """count cu/ct numbers (``external_cu_share`` on cu)."""
        is_cu = self.rng.random(count) < self.prof.external_cu_share
        ncu = int(is_cu.sum())
        cu_ids = self.new_numbers("cu", ncu)
        ct_ids = self.new_numbers("ct", count - ncu)
        ids = np.empty(count, dtype=np.int64)
        ids[is_cu] = cu_ids
        ids[~is_cu] = ct_ids
        return ids

    def new_imeis(self, count: int) -> np.ndarray:
        first = len(self.imei_strs)
        tac = self.rng.integers(35_000_000, 36_000_000, count)
        ser = self.rng.integers(0, 1_000_000, count)
        for t, s in zip(tac.tolist(), ser.tolist(), strict=False):
            body = f"{t:08d}{s:06d}"
            self.imei_strs.append(body + _luhn_digit(body))
        return np.arange(first, first + count)

    def closest_own(self, i: int, exclude: set[int]) -> int:
        """The closest own contact (by weight) not in ``exclude``, -1 if none (for hand-downs)."""
        lo, hi = self.indptr[i], self.indptr[i + 1]
        best, bw = -1, -1.0
        for p, w in zip(self.peer_all[lo:hi].tolist(), self.w_all[lo:hi].tolist(), strict=False):
            if p < self.n and p not in exclude and w > bw:
                best, bw = p, w
        return best

    def churn_at(self) -> int:
        return int(self.rng.integers(self.churn_lo, self.churn_hi + 1))

    def add_special(self, day: int, sub: int, peer: int, op: int, kind: int) -> None:
        if 0 <= day < self.days:
            self.specials.setdefault(day, []).append((sub, peer, op, kind))

    def handdown(self, donor: int, day: int) -> None:
        """Donor's old handset goes to a close own contact: that contact's IMEI becomes it."""
        r = self.closest_own(donor, self.handdown_used | {donor})
        if r < 0 or self.change_day[r] <= self.days or self.arche[r] != _A["loyal"]:
            return
        hd = day + int(self.rng.integers(1, 10))
        if hd >= self.days:
            return
        self.handdown_used.add(r)
        self.handdown_used.add(donor)
        self.imei_new[r] = self.imei_old[donor]
        self.change_day[r] = hd
        self.notes[donor].append(f"handdown_to={self.numbers[r]}@{hd}")
        self.notes[r].append(f"handdown_from={self.numbers[donor]}@{hd}")

    def change_handset(self, i: int, day: int, note: str) -> None:
        """A new IMEI from ``day`` on; sometimes the old handset is handed down."""
        self.imei_new[i] = self.new_imeis(1)[0]
        self.change_day[i] = day
        self.notes[i].append(f"{note}={day}")
        if self.rng.random() < self.prof.handdown_share:
            self.handdown(i, day)

    # ------------------------------------------------------------------ population and call graph
    def population(self, mix: dict[str, float]) -> None:
        """Archetypes (exact counts, random placement), profiles and usage levels."""
        rng, n, prof = self.rng, self.n, self.prof
        counts = _split_counts(n, mix)
        arche = np.repeat(np.arange(len(ARCHETYPES)), counts)
        rng.shuffle(arche)
        self.arche = arche
        prepaid_share = np.array(prof.prepaid_share)[arche]
        self.prepaid = prepaid = rng.random(n) < prepaid_share
        (pre_m, pre_s), (post_m, post_s) = prof.arpu_prepaid, prof.arpu_postpaid
        arpu = np.where(prepaid, rng.lognormal(np.log(pre_m), pre_s, n), rng.lognormal(np.log(post_m), post_s, n))
        arpu = np.where(arche == _A["drifter"], arpu * prof.drifter_arpu_factor, arpu)
        self.arpu = arpu = np.round(np.clip(arpu, 8, 800), 1)
        self.tenure = np.clip(rng.lognormal(np.log(prof.tenure[0]), prof.tenure[1], n), 30, 9000).astype(int)
        self.key_group = (~prepaid) & (rng.random(n) < prof.key_group_share)
        # usage levels (outgoing calls and SMS per day; incoming from outside peers)
        level = rng.lognormal(0.0, prof.usage_sigma, n) * np.clip(arpu / 60.0, 0.5, 2.0) ** 0.35
        self.base_call = prof.calls_per_day * level
        self.base_sms = prof.sms_per_day * level * rng.lognormal(0.0, prof.sms_sigma, n)
        self.base_in = (self.base_call + self.base_sms) * prof.incoming_factor

    def contacts(self) -> None:
        """Contact circles in communities, as weighted edges grouped by subscriber (CSR)."""
        rng, n, prof = self.rng, self.n, self.prof
        members, comm_start, comm_size, comm_of = _communities(rng, n, prof)
        k_total = np.clip(np.round(rng.lognormal(np.log(prof.contacts[0]), prof.contacts[1], n)), 3, prof.contacts_max)
        k_total = k_total.astype(int)
        own_frac = np.clip(rng.beta(*prof.own_contact_beta, n), 0.1, 0.9)
        k_own = np.maximum(1, np.round(k_total * own_frac)).astype(int)
        k_ext = np.maximum(1, k_total - k_own)
        # own edges: each subscriber draws about half its own contacts (the other half draws it)
        m = np.maximum(1, np.ceil(k_own / 2)).astype(int)
        src = np.repeat(np.arange(n), m)
        in_comm = rng.random(src.size) < prof.in_community_share
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
        w_pair = rng.lognormal(0.0, prof.edge_sigma, a_.size)
        e_src = [a_, b_]
        e_peer = [b_, a_]
        e_w = [w_pair, w_pair]
        # a few own-network numbers outside the simulated population (~3% of own contacts)
        n_outside = rng.binomial(k_own, prof.outside_own_share)
        tot_out = int(n_outside.sum())
        if tot_out:
            e_src.append(np.repeat(np.arange(n), n_outside))
            e_peer.append(self.new_numbers("own", tot_out))
            e_w.append(rng.lognormal(0.0, prof.edge_sigma, tot_out))
        # competitor contacts: half from a community pool (shared), half private
        pool_sizes = np.maximum(3, (comm_size * prof.competitor_pool_size).astype(int))
        pool_start = np.concatenate([[0], np.cumsum(pool_sizes)[:-1]])
        pool_ids = self.new_external(int(pool_sizes.sum()))
        ext_src = np.repeat(np.arange(n), k_ext)
        from_pool = rng.random(ext_src.size) < prof.competitor_pool_share
        cs = comm_of[ext_src]
        ext_peer = np.empty(ext_src.size, dtype=np.int64)
        ext_peer[from_pool] = pool_ids[
            pool_start[cs[from_pool]]
            + np.floor(rng.random(int(from_pool.sum())) * pool_sizes[cs[from_pool]]).astype(np.int64)
        ]
        ext_peer[~from_pool] = self.new_external(int((~from_pool).sum()))
        e_src.append(ext_src)
        e_peer.append(ext_peer)
        e_w.append(rng.lognormal(0.0, prof.edge_sigma, ext_src.size) * prof.competitor_weight)
        # service numbers (10086, banks, rail): low weight
        k_svc = 1 + rng.poisson(prof.services_per_sub, n)
        svc_src = np.repeat(np.arange(n), k_svc)
        e_src.append(svc_src)
        e_peer.append(self.service_ids[rng.choice(len(self.service_ids), svc_src.size, p=[0.5, 0.15, 0.1, 0.1, 0.15])])
        e_w.append(rng.uniform(0.03, 0.12, svc_src.size))
        self._index_edges(np.concatenate(e_src), np.concatenate(e_peer).astype(np.int64), np.concatenate(e_w))

    def _index_edges(self, src_all: np.ndarray, peer_all: np.ndarray, w_all: np.ndarray) -> None:
        order = np.argsort(src_all, kind="stable")
        src_all, self.peer_all, self.w_all = src_all[order], peer_all[order], w_all[order]
        self.indptr = indptr = np.concatenate([[0], np.cumsum(np.bincount(src_all, minlength=self.n))])
        self.c_cum = c_cum = np.cumsum(self.w_all)
        self.c_cum0 = np.concatenate([[0.0], c_cum])[indptr[:-1]]
        self.c_tot = np.concatenate([[0.0], c_cum])[indptr[1:]] - self.c_cum0

    def handsets(self) -> None:
        """Competitor peers per subscriber (the switchers' extra rival traffic), IMEIs and cells."""
        rng, n = self.rng, self.n
        self.rival_peers = np.full((n, 3), -1, dtype=np.int64)
        num_op_arr = np.asarray(self.num_op, dtype=np.int8)
        for i in range(n):
            pe = self.peer_all[self.indptr[i] : self.indptr[i + 1]]
            comp = pe[(num_op_arr[pe] == 1) | (num_op_arr[pe] == 2)]
            if comp.size:
                self.rival_peers[i] = comp[rng.integers(0, comp.size, 3)]
        self.imei_old = self.new_imeis(n)
        self.imei_new = self.imei_old.copy()
        self.change_day = np.full(n, self.days + 1, dtype=np.int64)
        self.cells = rng.integers(10_000, 99_999, (n, 3))
        self.away_cell = rng.integers(10_000, 99_999, n)

    # ------------------------------------------------------------------ archetype timelines
    def loyal(self) -> None:
        """Slow drift of the non-churners; loyal holidays, handset changes, shared handsets, rival care calls."""
        rng, days, notes, prof = self.rng, self.days, self.notes, self.prof
        loyal_idx = np.flatnonzero(self.arche == _A["loyal"])
        # everyone's usage drifts a little over the period (loyal and migrants: the non-churners)
        steady = np.flatnonzero((self.arche == _A["loyal"]) | (self.arche == _A["seasonal_migrant"]))
        slope = rng.normal(0.0, prof.trend_sd_per_day, steady.size)
        self.act[steady] *= np.exp(np.outer(slope, self.dd)).astype(np.float32)
        lv = rng.random(loyal_idx.size)
        for i in loyal_idx[lv < prof.holiday_share].tolist():
            L = int(rng.integers(prof.holiday_days[0], prof.holiday_days[1] + 1))
            h = int(rng.integers(5, days - L - 6)) if days > L + 12 else 0  # back for at least 6 days
            self.act[i, h : h + L] *= prof.holiday_level
            notes[i].append(f"holiday={h}-{min(h + L, days) - 1}")
        for i in loyal_idx[(lv >= prof.holiday_share) & (lv < prof.holiday_share + prof.handset_share)].tolist():
            if i in self.handdown_used:
                continue
            self.change_handset(i, int(rng.integers(min(3, days - 1), max(days - 2, 4))), "handset_change")
        lv2 = rng.random(loyal_idx.size)
        for i in loyal_idx[lv2 < prof.dual_own_sim_share].tolist():
            r = self.closest_own(i, self.handdown_used | {i})
            if r < 0 or self.change_day[r] <= days or self.change_day[i] <= days or self.arche[r] != _A["loyal"]:
                continue
            self.handdown_used.update((i, r))
            self.imei_old[r] = self.imei_old[i]
            self.imei_new[r] = self.imei_old[i]
            notes[i].append(f"dual_own_sim={self.numbers[r]}")
            notes[r].append(f"dual_own_sim={self.numbers[i]}")
        for i in loyal_idx[
            (lv2 >= prof.dual_own_sim_share) & (lv2 < prof.dual_own_sim_share + prof.loyal_rival_hotline_share)
        ].tolist():
            op = "cu" if rng.random() < prof.rival_cu_share else "ct"
            hd = int(rng.integers(0, days))
            self.add_special(hd, i, self.hotline_ids[op], 1 if op == "cu" else 2, _CALL)
            notes[i].append(f"rival_hotline={hd}:{_HOTLINE_OF[op]}")

    def switchers(self) -> None:
        """Ramp, shadow number taking over, care-line calls, decay to the cancelled old number."""
        rng, dd, prof = self.rng, self.dd, self.prof
        (ramp_lo, ramp_hi), (delay_lo, delay_hi) = prof.switcher_ramp_days, prof.shadow_delay_days
        for i in np.flatnonzero(self.arche == _A["switcher"]).tolist():
            C = self.churn_at()
            S = max(min(self.baseline, C - 7), C - int(rng.integers(ramp_lo, ramp_hi + 1)))
            S2 = min(S + int(rng.integers(delay_lo, delay_hi + 1)), max(C - 5, S))
            op = "cu" if rng.random() < prof.rival_cu_share else "ct"
            opc = 1 if op == "cu" else 2
            self.rival[i] = opc
            self.shadow[i] = self.new_numbers(op, 1)[0]
            s = np.clip((dd - S2 + 1) / max(C - S2, 1), 0.0, 1.0).astype(np.float32)
            s[dd < S2] = 0.0
            s[dd >= C] = 1.0
            self.shadow_s[i] = s
            a = 1.0 - 0.9 * s**0.8
            a[(dd >= S) & (dd < S2)] = prof.switcher_ramp_level
            a[dd >= C] = 0.0
            self.act[i] = a
            self.status[i, C:] = 2
            # asking around, then on-net via the new SIM
            self.boost[i] = np.where((dd >= S) & (dd < C), prof.switcher_rival_calls * (1.0 - 0.7 * s), 0.0)
            if self.rival_peers[i, 0] < 0:
                self.rival_peers[i] = self.new_external(3)
            self.churn_day[i] = C
            self.recharge_until[i] = S2 + prof.switcher_recharge_days
            self.notes[i] += [f"ramp_start={S}", f"shadow_from={S2}", f"rival={op}"]
            if rng.random() < prof.switcher_hotline_share:
                second = int(rng.random() < prof.switcher_second_hotline)
                hds = sorted({int(rng.integers(S2, max(C - 2, S2 + 1))) for _ in range(1 + second)})
                for hd in hds:
                    self.add_special(hd, i, self.hotline_ids[op], opc, _CALL)
                self.notes[i].append("hotline=" + ",".join(f"{hd}:{_HOTLINE_OF[op]}" for hd in hds))
            if rng.random() < prof.switcher_dual_sim_handset_share and i not in self.handdown_used:
                self.change_handset(i, S2, "dual_sim_handset")

    def silent_porters(self) -> None:
        """Normal until the stop day, then nothing (ported out)."""
        for i in np.flatnonzero(self.arche == _A["silent_porter"]).tolist():
            C = self.churn_at()
            self.act[i, C:] = 0.0
            self.status[i, C:] = 1
            self.rival[i] = 1 if self.rng.random() < self.prof.rival_cu_share else 2
            self.churn_day[i] = C
            self.stop_day[i] = C
            self.notes[i].append(f"ported_to={_OP_NAMES[self.rival[i]]}")

    def seasonal_migrants(self) -> None:
        """Quiet for 3-5 weeks (away cell, recharges paused) after the baseline, then back."""
        rng, days, (q_lo, q_hi) = self.rng, self.days, self.prof.migrant_quiet_days
        for i in np.flatnonzero(self.arche == _A["seasonal_migrant"]).tolist():
            L = int(rng.integers(q_lo, q_hi + 1))
            lo = min(max(days // 2 - 14, self.baseline), max(days - L - 7, 0))
            hi = max(days - L - 7, lo)
            Q = int(rng.integers(lo, hi + 1))
            self.act[i, Q : Q + L] = self.prof.migrant_level
            self.quiet[i, Q : Q + L] = True
            self.recharge_pause[i, Q : Q + L] = True
            self.notes[i].append(f"quiet={Q}-{min(Q + L, days) - 1}")

    def drifters(self) -> None:
        """Usage decays over 30-60 days to nothing."""
        rng, dd, prof = self.rng, self.dd, self.prof
        (d_lo, d_hi) = prof.drifter_decay_days
        for i in np.flatnonzero(self.arche == _A["drifter"]).tolist():
            C = self.churn_at()
            S = max(min(self.baseline, C - 7), C - int(rng.integers(d_lo, d_hi + 1)))
            frac = np.clip((C - dd) / max(C - S, 1), 0.0, 1.0)
            self.act[i] = np.where(dd < S, 1.0, frac**prof.drifter_shape)
            self.act[i, C:] = 0.0
            self.status[i, C:] = 2
            self.churn_day[i] = C
            self.notes[i].append(f"decay_from={S}")

    def lapsers(self) -> None:
        """Usual recharge intervals; prepaid lapsers stop recharging and decline to suspension."""
        rng, dd, prof = self.rng, self.dd, self.prof
        self.interval = rng.choice(list(prof.recharge_every), self.n, p=list(prof.recharge_share))
        lapsers = np.flatnonzero(self.arche == _A["prepaid_lapser"])
        if prof.lapser_recharge_share is not None and lapsers.size:  # (never for the default profile)
            self.interval[lapsers] = rng.choice(
                list(prof.recharge_every), lapsers.size, p=list(prof.lapser_recharge_share)
            )
        g_lo, g_hi = prof.lapser_decline_days
        for i in lapsers.tolist():
            C = self.churn_at()
            G = max(1, min(int(rng.integers(g_lo, g_hi + 1)), C - self.baseline))  # decline (balance running out)
            E = C - G  # expected next recharge never happens; balance runs dry from about here
            R = E - int(self.interval[i])  # the last recharge is about one interval before E
            self.recharge_until[i] = R
            a = np.ones(self.days, dtype=np.float32)
            dec = (dd >= E) & (dd < C)
            a[dec] = np.clip(1.0 - (dd[dec] - E + 1) / G, 0.05, 1.0)
            a[dd >= C] = 0.0
            self.act[i] = a
            self.status[i, C:] = 2
            self.churn_day[i] = C

    # ------------------------------------------------------------------ recharges, profiles, truth
    def recharges(self) -> dict[int, list[tuple]]:
        """Prepaid recharges by day: usual interval per subscriber, amount from ARPU."""
        rng, days, act, prof = self.rng, self.days, self.act, self.prof
        j_lo, j_hi = prof.recharge_jitter
        amt_choices = np.array(prof.recharge_amounts)
        recharges: dict[int, list[tuple]] = {}
        last_recharge = np.full(self.n, -1, dtype=np.int64)
        for i in np.flatnonzero(self.prepaid).tolist():
            I = int(self.interval[i])
            want = float(self.arpu[i]) * I / 30.0
            amount = int(amt_choices[np.argmin(np.abs(amt_choices - want))])
            ch = int(rng.integers(0, len(_CHANNELS)))
            lapser = self.arche[i] == _A["prepaid_lapser"]
            if lapser:
                # the schedule runs backwards from the last recharge, so that it really is the last one
                sched = [int(self.recharge_until[i])]
                while sched[-1] - I - 1 >= 0:
                    sched.append(sched[-1] - I - int(rng.integers(j_lo, j_hi + 1)))
                sched = [d for d in reversed(sched) if 0 <= d < days]
            else:
                sched = []
                d = int(rng.integers(0, I))
                while d < days:
                    sched.append(d)
                    d += I + int(rng.integers(j_lo, j_hi + 1))
            for d in sched:
                ok = d <= self.recharge_until[i] and act[i, d] > 0 and not self.recharge_pause[i, d]
                if self.arche[i] == _A["drifter"]:
                    ok = ok and rng.random() < max(float(act[i, d]), 0.0) ** 0.5
                if ok:
                    recharges.setdefault(d, []).append((i, amount, ch))
                    last_recharge[i] = d
            self.notes[i].append(f"recharge_every={I}")
            if lapser:
                self.notes[i].append(f"last_recharge={last_recharge[i]}")
        return recharges

    def profile(self, i: int, ts: int, arpu_v: float) -> dict:
        return {
            "type": "profile",
            "msisdn": self.numbers[i],
            "ts": ts,
            "plan": "prepaid" if self.prepaid[i] else "postpaid",
            "activated": (self.start_date - _dt.timedelta(days=int(self.tenure[i]))).isoformat(),
            "arpu": float(arpu_v),
            "key_group_member": bool(self.key_group[i]),
        }

    def profile_updates(self) -> dict[int, list[dict]]:
        """A few ARPU changes (~2% of subscribers) on a day they are active."""
        rng, days = self.rng, self.days
        updates: dict[int, list[dict]] = {}
        for i in np.flatnonzero(rng.random(self.n) < self.prof.profile_update_share).tolist():
            d = int(rng.integers(1, max(days, 2)))
            if d < days and self.act[i, d] > 0:
                p = self.profile(
                    i,
                    self.start_ts + d * DAY_S + int(rng.integers(3600 * 9, 3600 * 18)),
                    round(float(self.arpu[i]) * rng.uniform(0.8, 1.2), 1),
                )
                updates.setdefault(d, []).append(p)
                self.notes[i].append(f"profile_update={d}")
        return updates

    def truth(self) -> list[dict]:
        rows = []
        for i in range(self.n):
            cd = int(self.churn_day[i])
            rows.append(
                {
                    "msisdn": self.numbers[i],
                    "archetype": ARCHETYPES[self.arche[i]],
                    "churn_day": "" if cd < 0 else cd,
                    "churn_ts": "" if cd < 0 else self.start_ts + cd * DAY_S,
                    "stop_day": "" if self.stop_day[i] < 0 else int(self.stop_day[i]),
                    "plan": "prepaid" if self.prepaid[i] else "postpaid",
                    "arpu": float(self.arpu[i]),
                    "tenure": int(self.tenure[i]),
                    "second_sim": self.numbers[self.shadow[i]] if self.shadow[i] >= 0 else "",
                    "notes": ";".join(self.notes[i]),
                }
            )
        return rows


def _plan(n: int, days: int, seed: int, start: str, mix: dict[str, float] | None, prof: Profile) -> _World:
    """The plan for ``prof`` (``mix``, if given, replaces the profile's archetype mix)."""
    if n < 1 or days < 1:
        raise ValueError("need at least one subscriber and one day")
    p = _Planner(n, days, seed, start, prof)
    p.population(mix or prof.mix_dict)
    p.contacts()
    p.handsets()
    p.loyal()
    p.switchers()
    p.silent_porters()
    p.seasonal_migrants()
    p.drifters()
    p.lapsers()
    recharges = p.recharges()
    profiles0 = [p.profile(i, p.start_ts, p.arpu[i]) for i in range(n)]
    profile_updates = p.profile_updates()
    return _World(
        n=n,
        days=days,
        start_ts=p.start_ts,
        profile=prof,
        numbers=p.numbers,
        num_op=np.asarray(p.num_op, dtype=np.int8),
        arche=p.arche,
        act=p.act,
        status=p.status,
        shadow=p.shadow,
        shadow_s=p.shadow_s,
        rival=p.rival,
        boost=p.boost,
        rival_peers=p.rival_peers,
        base_call=p.base_call,
        base_sms=p.base_sms,
        base_in=p.base_in,
        indptr=p.indptr,
        c_peer=p.peer_all,
        c_cum=p.c_cum,
        c_cum0=p.c_cum0,
        c_tot=p.c_tot,
        imei_strs=p.imei_strs,
        imei_old=p.imei_old,
        imei_new=p.imei_new,
        change_day=p.change_day,
        cells=p.cells,
        away_cell=p.away_cell,
        quiet=p.quiet,
        specials=p.specials,
        recharges=recharges,
        profiles0=profiles0,
        profile_updates=profile_updates,
        truth=p.truth(),
        service0=int(p.service_ids[0]),
    )
