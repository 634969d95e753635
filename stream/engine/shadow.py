"""The second SIM ("shadow" competitor number): pure logic of a three-stage keyed join.

A switcher runs both SIMs for weeks before porting out, and the new competitor number X starts
calling the same people. We see those calls in our own subscribers' CDRs, with X as the peer. The
join finds, for a subscriber S, a competitor number X whose set of contacts among our subscribers
overlaps S's weighted contact circle, and which appeared while S's traffic to those contacts fell.

The three stages are keyed differently, so the service runs each in its own agent and routes
between them through Kafka, the way a distributed join does; the backtest chains the same classes
in process (:class:`ShadowJoin`):

1. :class:`PeerSketches`, keyed by X (repartition topic ``churn.shadow.contacts``, keyed by X):
   every call or SMS between one of our subscribers c and a competitor number X updates X's MinHash
   signature of {c} (``M`` = 32 minima of 32-bit hashes), its first and last day. Updates are
   minima and maxima, so replays are harmless. X not seen for ``shadow_expire_days`` expires.
   An X reaching >= 3 of our subscribers, first seen within ``shadow_new_days``, publishes its
   signature (at most once a day, when it changed) to the bands.
2. :class:`BandIndex`, keyed by LSH band hash (topic ``churn.shadow.bands``): the signature is cut
   into ``BANDS`` bands of ``ROWS`` values; each band's hash is a key. Subscribers S publish their
   circle's band keys too (the engine decides when, see ``Engine.shadow_publications``). An X and an
   S meeting under one key are a candidate pair; the candidate, with X's signature, is routed to S
   (topic ``churn.shadow.evidence``, keyed by S, co-partitioned with the inputs).
3. ``Engine.apply_shadow`` (keyed by S): the confirmation, against S's own state. X must reach
   S's *weighted* circle as it was before X appeared (>= ``shadow_min_overlap`` strong members,
   >= ``shadow_min_weight_share`` of the circle's contact-day weight, MinHash Jaccard >=
   ``shadow_min_jaccard``), and X must be new (first seen >= ``shadow_warmup_days`` after S, within
   ``shadow_new_days``). At evaluation the timing is checked too: S's contact days with the shared
   members since X appeared are down >= ``shadow_min_decline`` against before. Friends shared with
   a family member on a rival network fail both the newness and the decline.

Band hash probability: with ``BANDS`` = 16 bands of ``ROWS`` = 2, a pair with Jaccard J becomes a
candidate with probability 1 - (1 - J^2)^16: 0.48 at J = 0.2, 0.78 at 0.3, 0.999 at 0.6.

Numbers are compared in national form (a leading country code is stripped from numbers longer
than ``NATIONAL_DIGITS``), so ``8613800001234`` and ``13800001234`` are one member.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np

from stream.contract import mask_msisdn

from .config import EngineConfig

__all__ = [
    "M",
    "BANDS",
    "ROWS",
    "NATIONAL_DIGITS",
    "EMPTY",
    "national",
    "member_hashes",
    "signature",
    "jaccard",
    "band_keys",
    "band_keys_many",
    "signatures",
    "jaccard_many",
    "shadow_detail",
    "PeerSketches",
    "BandIndex",
    "ShadowJoin",
]

M = 32  # MinHash values per signature
BANDS = 16
ROWS = M // BANDS
NATIONAL_DIGITS = 11
EMPTY = np.uint32(0xFFFFFFFF)
NODAY = -(2**31)

_U = np.uint64
_SEEDS = (np.arange(1, M + 1, dtype=np.uint64) * _U(0x9E3779B97F4A7C15)) ^ _U(
    0x5348414430573141
)  # fixed: sketches must agree across workers
_M1, _M2 = _U(0xBF58476D1CE4E5B9), _U(0x94D049BB133111EB)


def mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer (a bijection on uint64), vectorised."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _U(30))) * _M1
        z = (z ^ (z >> _U(27))) * _M2
        return z ^ (z >> _U(31))


def national(numbers: np.ndarray, country_code: str = "86") -> np.ndarray:
    """Numbers (uint64 of their digits) in national form: a leading ``country_code`` is stripped
    from numbers longer than ``NATIONAL_DIGITS`` digits."""
    v = np.asarray(numbers, dtype=np.uint64)
    p = _U(10**NATIONAL_DIGITS)
    return np.where(v // p == _U(int(country_code)), v % p, v).astype(np.uint64)


def member_hashes(ids: np.ndarray) -> np.ndarray:
    """(n, M) uint32: the M hash values of each member id (national number)."""
    ids = np.asarray(ids, dtype=np.uint64)
    return (mix(ids[:, None] ^ _SEEDS[None, :]) >> _U(32)).astype(np.uint32)


def signature(ids: Iterable[int]) -> np.ndarray:
    """MinHash signature (M uint32) of a set of member ids; all ``EMPTY`` for the empty set."""
    arr = np.fromiter((int(x) for x in ids), dtype=np.uint64)
    if not len(arr):
        return np.full(M, EMPTY, dtype=np.uint32)
    return member_hashes(arr).min(axis=0)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """MinHash estimate of the Jaccard similarity of the two sets behind signatures ``a``, ``b``."""
    both = (a != EMPTY) | (b != EMPTY)
    n = int(both.sum())
    return float(((a == b) & both).sum()) / n if n else 0.0


def signatures(H: np.ndarray, members: np.ndarray) -> np.ndarray:
    """(k, M): the MinHash signature of each of k sets, from ``H`` ((k, n, M), the hashes of n
    candidate members each: :func:`member_hashes`) and ``members`` ((k, n) bool, which are in);
    all ``EMPTY`` for an empty set, as :func:`signature`."""
    return np.where(members[:, :, None], H, EMPTY).min(axis=1)


def jaccard_many(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`jaccard` of each row of ``a`` with the same row of ``b`` ((k, M) signatures)."""
    both = (a != EMPTY) | (b != EMPTY)
    n = both.sum(axis=1)
    return np.where(n > 0, ((a == b) & both).sum(axis=1) / np.maximum(n, 1), 0.0)


def band_keys(sig: np.ndarray) -> list[str]:
    """The ``BANDS`` LSH keys of a signature (hex strings; the Kafka key of the band stage)."""
    return band_keys_many(np.asarray(sig).reshape(1, M))[0]


def band_keys_many(sigs: np.ndarray) -> list[list[str]]:
    """:func:`band_keys` of each signature (row) of ``sigs`` ((k, M)), computed together."""
    s = np.asarray(sigs, dtype=np.uint64).reshape(-1, BANDS, ROWS)
    acc = np.broadcast_to(np.arange(BANDS, dtype=np.uint64) + _U(1), s.shape[:2])
    with np.errstate(over="ignore"):
        for j in range(ROWS):
            acc = mix(acc * _U(0x100000001B3) ^ s[:, :, j])
    text = acc.astype(">u8").tobytes().hex()  # 16 hex digits per key, big-endian: f"{k:016x}"
    w = 16 * BANDS
    return [[text[i + 16 * b : i + 16 * b + 16] for b in range(BANDS)] for i in range(0, len(text), w)]


def shadow_detail(peer: int, j: float) -> dict:
    """The dual_sim signal's detail for a shadow number: masked (personal data), with its Jaccard."""
    return {"shadow_peer": mask_msisdn(str(peer)), "jaccard": round(j, 3)}


# ---------------------------------------------------------------------- stage 1: per competitor number
_PEER = struct.Struct("<iiiQQB" + "I" * M)  # first/last/last publish day, two members, members seen (<= 3), signature


class PeerSketches:
    """Stage 1, keyed by competitor number X: MinHash of X's contacts among our subscribers.

    Columnar (one row per X) and bounded: ``M`` * 4 + 29 bytes per X, expired after
    ``shadow_expire_days`` unseen."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._row: dict[int, int] = {}
        self._ids: list[int] = []
        self._cap = 0
        self._n = 0
        self._sig = np.zeros((0, M), dtype=np.uint32)
        self._first = np.zeros(0, dtype=np.int32)
        self._last = np.zeros(0, dtype=np.int32)
        self._pub = np.zeros(0, dtype=np.int32)
        self._dirty = np.zeros(0, dtype=bool)
        self._m0 = np.zeros(0, dtype=np.uint64)  # two distinct members and how many were seen, capped
        self._m1 = np.zeros(0, dtype=np.uint64)  # at 3: a number must reach >= shadow_min_overlap of
        self._nmem = np.zeros(0, dtype=np.uint8)  # our subscribers before it publishes
        self._grow(1024)

    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, 2 * self._cap)
        n = self._n

        def ext(arr, fill):
            out = np.full((cap,) + arr.shape[1:], fill, dtype=arr.dtype)
            out[:n] = arr[:n]
            return out

        self._sig = ext(self._sig, EMPTY)
        self._first = ext(self._first, 2**31 - 1)
        self._last = ext(self._last, NODAY)
        self._pub = ext(self._pub, NODAY)
        self._dirty = ext(self._dirty, False)
        self._m0 = ext(self._m0, 0)
        self._m1 = ext(self._m1, 0)
        self._nmem = ext(self._nmem, 0)
        self._cap = cap

    def __len__(self) -> int:
        return self._n

    def __contains__(self, x: int) -> bool:
        return int(x) in self._row

    def _rows_for(self, xs: np.ndarray) -> np.ndarray:
        row = self._row
        out = np.empty(len(xs), dtype=np.int64)
        for i, x in enumerate(xs.tolist()):
            r = row.get(x)
            if r is None:
                self._grow(self._n + 1)
                r = row[x] = self._n
                self._ids.append(x)
                self._n += 1
            out[i] = r
        return out

    def observe(self, x: np.ndarray, member: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Contacts between competitor numbers ``x`` and our subscribers ``member`` (national
        uint64) on ``day``. Returns the ids of the X whose signature changed."""
        x = np.asarray(x, dtype=np.uint64)
        if not len(x):
            return np.zeros(0, dtype=np.uint64)
        # one observation per (x, member): the latest day moves "last", the earliest "first"
        key = np.stack([x, np.asarray(member, dtype=np.uint64)], axis=1)
        uk, inv = np.unique(key, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        day = np.asarray(day, dtype=np.int64)
        dmin = np.full(len(uk), np.iinfo(np.int64).max)
        dmax = np.full(len(uk), np.iinfo(np.int64).min)
        np.minimum.at(dmin, inv, day)
        np.maximum.at(dmax, inv, day)
        ux, xinv = np.unique(uk[:, 0], return_inverse=True)
        xinv = xinv.reshape(-1)
        rows = self._rows_for(ux)
        h = member_hashes(uk[:, 1])
        new = np.full((len(ux), M), EMPTY, dtype=np.uint32)
        np.minimum.at(new, xinv, h)
        before = self._sig[rows]
        after = np.minimum(before, new)
        changed = (after != before).any(axis=1)
        self._sig[rows] = after
        f = np.full(len(ux), np.iinfo(np.int64).max)
        la = np.full(len(ux), np.iinfo(np.int64).min)
        np.minimum.at(f, xinv, dmin)
        np.maximum.at(la, xinv, dmax)
        self._first[rows] = np.minimum(self._first[rows], f)
        self._last[rows] = np.maximum(self._last[rows], la)
        self._dirty[rows] |= changed
        # members seen, capped at 3 (exact: the pairs are unique, two ids remembered)
        need = np.flatnonzero(self._nmem[rows] < 3)
        if len(need):
            pos = np.flatnonzero(np.isin(xinv, need))
            for j, mem in zip(xinv[pos].tolist(), uk[pos, 1].tolist(), strict=False):
                r = rows[j]
                k = int(self._nmem[r])
                if k >= 3 or mem == self._m0[r] or (k >= 2 and mem == self._m1[r]):
                    continue
                if k == 0:
                    self._m0[r] = mem
                elif k == 1:
                    self._m1[r] = mem
                self._nmem[r] = k + 1
        return ux[changed]

    def publications(self, today: int) -> list[dict]:
        """X due to publish its signature to the bands: changed since its last publication, not yet
        published ``today``, reaching >= shadow_min_overlap (at most 3) of our subscribers, and new (first seen within
        ``shadow_new_days``; an established number is never a new second SIM)."""
        n = self._n
        cfg = self.config
        due = (
            self._dirty[:n]
            & (self._nmem[:n] >= min(3, cfg.shadow_min_overlap))
            & (self._pub[:n] < today)
            & (self._first[:n] >= today - cfg.shadow_new_days)
        )
        rows = np.flatnonzero(due)
        if not len(rows):
            return []
        out = []
        for r in rows.tolist():
            out.append(
                {
                    "x": self._ids[r],
                    "sig": self._sig[r].tolist(),
                    "first": int(self._first[r]),
                    "last": int(self._last[r]),
                    "day": int(today),
                }
            )
        self._pub[rows] = today
        self._dirty[rows] = False
        return out

    def get(self, x: int) -> dict | None:
        r = self._row.get(int(x))
        if r is None:
            return None
        return {
            "x": int(x),
            "sig": self._sig[r].copy(),
            "first": int(self._first[r]),
            "last": int(self._last[r]),
            "pub": int(self._pub[r]),
            "dirty": bool(self._dirty[r]),
        }

    def expire(self, today: int) -> list[int]:
        """Drop every X not seen for ``shadow_expire_days``; returns their ids."""
        n = self._n
        old = np.flatnonzero(self._last[:n] < today - self.config.shadow_expire_days)
        if not len(old):
            return []
        gone = [self._ids[r] for r in old.tolist()]
        keep = np.setdiff1d(np.arange(n), old)
        m = len(keep)
        for arr in (self._sig, self._first, self._last, self._pub, self._dirty, self._m0, self._m1, self._nmem):
            arr[:m] = arr[keep]
        # the rows freed at the end are reused by the next new numbers: back to their initial state
        # (a new number used to inherit an expired one's signature, first day and members)
        for arr, fill in (
            (self._sig, EMPTY),
            (self._first, 2**31 - 1),
            (self._last, NODAY),
            (self._pub, NODAY),
            (self._dirty, False),
            (self._m0, 0),
            (self._m1, 0),
            (self._nmem, 0),
        ):
            arr[m:n] = fill
        self._ids = [self._ids[r] for r in keep.tolist()]
        self._row = {x: i for i, x in enumerate(self._ids)}
        self._n = m
        return gone

    def snapshot(self, x: int) -> bytes | None:
        """The durable state of X (dirty flags are not: a restart republishes at most once more)."""
        r = self._row.get(int(x))
        if r is None:
            return None
        return _PEER.pack(
            int(self._first[r]),
            int(self._last[r]),
            int(self._pub[r]),
            int(self._m0[r]),
            int(self._m1[r]),
            int(self._nmem[r]),
            *self._sig[r].tolist(),
        )

    def restore(self, x: int, data: bytes) -> None:
        vals = _PEER.unpack(data)
        r = int(self._rows_for(np.array([int(x)], dtype=np.uint64))[0])
        self._first[r], self._last[r], self._pub[r] = vals[0], vals[1], vals[2]
        self._m0[r], self._m1[r], self._nmem[r] = vals[3], vals[4], vals[5]
        self._sig[r] = np.array(vals[6:], dtype=np.uint32)
        self._dirty[r] = False


# ---------------------------------------------------------------------- stage 2: per band hash
class BandIndex:
    """Stage 2, keyed by LSH band hash: who published under each key. An X meeting an S under one
    key makes a candidate pair, routed to S with X's signature. Bounded: at most
    ``shadow_band_capacity`` entries per side and key (the most recent kept), entries older than
    ``shadow_expire_days`` dropped."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._b: dict[str, dict] = {}
        self._by_day: dict[int, set[str]] = {}  # day -> keys given an entry of that day (expiry index)

    def __len__(self) -> int:
        return len(self._b)

    def add(self, key: str, rec: dict) -> list[dict]:
        """Record ``rec`` (an X publication ``{"x", "sig", "first", "last", "day"}`` or an S one
        ``{"s", "day"}``) under band ``key``; returns the candidate pairs it completes, as evidence
        for S: ``{"s", "x", "sig", "first", "last", "day"}``."""
        return self.add_many((key,), rec)

    def add_many(self, keys, rec: dict) -> list[dict]:
        """:meth:`add` of ``rec`` under each of ``keys``, in order (the evidence of all of them).
        An X's entries share one copy of its signature (never changed in place)."""
        cfg = self.config
        day = int(rec["day"])
        lo = day - cfg.shadow_expire_days
        cap = cfg.shadow_band_capacity
        bands = self._b
        keyed = self._by_day.setdefault(day, set())
        out: list[dict] = []
        is_x = "x" in rec
        if is_x:
            x, first, last = int(rec["x"]), int(rec["first"]), int(rec["last"])
            sig = list(rec["sig"])
            entry = [day, first, last, sig]
        else:
            s = str(rec["s"])
        for key in keys:
            b = bands.get(key)
            if b is None:
                b = bands[key] = {"s": {}, "x": {}}
            keyed.add(key)
            if is_x:
                side = b["x"]
                side[x] = entry
                for s_, sd in b["s"].items():
                    if sd >= lo:
                        out.append({"s": s_, "x": x, "sig": sig, "first": first, "last": last, "day": max(day, sd)})
            else:
                side = b["s"]
                side[s] = max(day, side.get(s, NODAY))
                for x_, (xd, first_, last_, sig_) in b["x"].items():
                    if xd >= lo:
                        out.append({"s": s, "x": x_, "sig": sig_, "first": first_, "last": last_, "day": max(day, xd)})
            if len(side) > cap:
                _trim(side, cap, is_x)
        return out

    def expire(self, today: int) -> list[str]:
        """Drop entries older than ``shadow_expire_days``; returns the keys changed (empty keys are
        removed: their snapshot is None)."""
        lo = today - self.config.shadow_expire_days
        changed = []
        keys: set[str] = set()
        for d in [d for d in self._by_day if d < lo]:
            keys |= self._by_day.pop(d)
        for key in sorted(keys):
            b = self._b.get(key)
            if b is None:
                continue
            s_old = [s for s, d in b["s"].items() if d < lo]
            x_old = [x for x, v in b["x"].items() if v[0] < lo]
            if not s_old and not x_old:
                continue
            for s in s_old:
                del b["s"][s]
            for x in x_old:
                del b["x"][x]
            if not b["s"] and not b["x"]:
                del self._b[key]
            changed.append(key)
        return changed

    def snapshot(self, key: str) -> dict | None:
        b = self._b.get(key)
        if b is None:
            return None
        return {"s": dict(b["s"]), "x": {str(x): v for x, v in b["x"].items()}}

    def restore(self, key: str, data: dict) -> None:
        self._b[key] = b = {
            "s": {str(s): int(d) for s, d in data["s"].items()},
            "x": {int(x): [int(v[0]), int(v[1]), int(v[2]), [int(y) for y in v[3]]] for x, v in data["x"].items()},
        }
        for d in list(b["s"].values()) + [v[0] for v in b["x"].values()]:
            self._by_day.setdefault(d, set()).add(key)


def _trim(side: dict, cap: int, is_x: bool) -> None:
    """Keep the ``cap`` most recent entries of one side of a band key (X entries: [day, ...])."""
    order = sorted(side, key=(lambda k: (side[k][0], str(k))) if is_x else (lambda k: (side[k], str(k))))
    for k in order[: len(side) - cap]:
        del side[k]


# ---------------------------------------------------------------------- the join in process
class ShadowJoin:
    """Stages 1 and 2 chained in process (the backtest's stand-in for the two Kafka hops). The
    service runs the same classes, one per agent."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.peers = PeerSketches(self.config)
        self.bands = BandIndex(self.config)
        self._today: int | None = None
        self.x_publications = 0
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # contacts of days not published yet

    def observe(self, observations: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Feed contact observations only: kept until the next :meth:`step` as of a later day
        than theirs (a day's contacts go into the publications as of the days after it)."""
        x, member, day = observations
        if len(x):
            self._pending.append((np.asarray(x), np.asarray(member), np.asarray(day)))

    def step(
        self, observations: tuple[np.ndarray, np.ndarray, np.ndarray], s_publications: list[dict], today: int
    ) -> list[dict]:
        """Feed one batch's contact observations and subscriber publications; returns evidence for
        subscribers (stage 3 input).

        Publications as of ``today`` (a day decided) hold the contacts of the days before it, all
        of them and no others, whenever they arrived: a day's contacts wait until the decision of
        the next day, at ``decision_grace_s`` into it, as a decision waits for its days' events.
        So the service's stage 1, which holds contacts by day the same way, publishes the same
        numbers whatever a worker had applied when it decided (stream/service/shadow.py)."""
        self.observe(observations)
        keep = []
        for x, member, day in self._pending:
            due = day < today
            if due.any():
                self.peers.observe(x[due], member[due], day[due])
            if not due.all():
                keep.append((x[~due], member[~due], day[~due]))
        self._pending = keep
        if self._today is None or today > self._today:
            if self._today is not None:
                self.peers.expire(today)
                self.bands.expire(today)
            self._today = today
        evidence: list[dict] = []
        x_pubs = self.peers.publications(today)
        self.x_publications += len(x_pubs)
        if x_pubs:
            keys = band_keys_many(np.array([rec["sig"] for rec in x_pubs], dtype=np.uint32))
            for rec, ks in zip(x_pubs, keys, strict=True):
                evidence.extend(self.bands.add_many(ks, rec))
        for rec in s_publications:
            evidence.extend(self.bands.add_many(rec["bands"], {"s": rec["s"], "day": rec["day"]}))
        return evidence
