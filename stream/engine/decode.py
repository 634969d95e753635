"""Raw bytes → columnar :class:`Batch` + rejects. Pure: shared by the vectorised and the reference engine.

The batch is parsed with one ``orjson.loads(b"[" + b",".join(chunk) + b"]")`` per chunk of 128 lines,
one message at a time only inside a chunk whose joined parse failed; then each event type is
validated column by column: a cheap whole-column check (``set(map(type, col))``, ``all(map(...))``)
and, only when it fails, a candidate scan with C-level maps into numpy masks that names the
positions which may fail, and the exact per-element rule on those only. Rejects never stop the batch.
"""

from __future__ import annotations

import datetime as _dt
import gc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import is_, is_not, itemgetter, le, methodcaller, ne
from typing import NamedTuple

import numpy as np
import orjson

from stream.contract import KIND_CALL, KIND_PROFILE, KIND_RECHARGE, KIND_SMS

from .config import EngineConfig

__all__ = ["Batch", "Reject", "REJECT_REASONS", "decode", "PLAN_CODES", "mix64"]

REJECT_REASONS = (
    "invalid_json",
    "not_object",
    "unknown_type",
    "missing_field",
    "invalid_field",
    "key_mismatch",
    "late",
    "future",
)

PLAN_CODES = {"prepaid": 1, "postpaid": 2}
MASK64 = (1 << 64) - 1
_GOLD = 0x9E3779B97F4A7C15


def mix64(x: int) -> int:
    """The 64-bit multiplicative mix used for peer buckets/bits (same as the numpy path)."""
    return (x * _GOLD) & MASK64


class Reject(NamedTuple):
    index: int
    reason: str
    detail: str


@dataclass
class Batch:
    """Validated events, columnar. ``idx`` indexes the original ``raws``; rows follow arrival order."""

    idx: np.ndarray  # int64
    src: np.ndarray  # int64 (0 calls, 1 sms, 2 recharges, 3 profiles)
    off: np.ndarray  # int64 input offset
    msisdn: list  # list[str]
    kind: np.ndarray  # int8 (stream.contract.KIND_*)
    ts: np.ndarray  # float64 seconds
    day: np.ndarray  # int64 day index in the configured zone
    out: np.ndarray  # bool: direction out (call/sms)
    peer: np.ndarray  # uint64: int(peer digits), 0 = none
    comp: np.ndarray  # bool: peer on a competitor network
    hotline: np.ndarray  # bool: outgoing call to a competitor care hotline
    dur: np.ndarray  # int64 duration_s (calls)
    imei: np.ndarray  # uint64 (0 = none)
    cents: np.ndarray  # int64 recharge amount in cents
    plan: np.ndarray  # int8 (profile)
    activated: np.ndarray  # int64 activation day index, -1 unknown
    arpu_c: np.ndarray  # int64 ARPU in cents, -1 unknown
    key_group: np.ndarray  # int8: 1/0, -1 unknown

    def __len__(self) -> int:
        return len(self.idx)

    def take(self, sel: np.ndarray) -> Batch:
        sel = np.asarray(sel)
        if sel.dtype == bool:
            pos = np.flatnonzero(sel)
        else:
            pos = sel
        kw = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            kw[name] = list(map(v.__getitem__, pos.tolist())) if isinstance(v, list) else v[pos]
        return Batch(**kw)

    @staticmethod
    def empty() -> Batch:
        z = lambda dt: np.zeros(0, dtype=dt)  # noqa: E731
        return Batch(
            z(np.int64),
            z(np.int64),
            z(np.int64),
            [],
            z(np.int8),
            z(np.float64),
            z(np.int64),
            z(bool),
            z(np.uint64),
            z(bool),
            z(bool),
            z(np.int64),
            z(np.uint64),
            z(np.int64),
            z(np.int8),
            z(np.int64),
            z(np.int64),
            z(np.int8),
        )


_MISSING = object()
_NO_OBJECT: dict = {"type": object()}  # stands in for a non-object (already rejected) in the type scan
_CALL_FIELDS = ("type", "msisdn", "ts", "direction", "peer", "duration_s")
_GET_IMEI = methodcaller("get", "imei")
_GET_POP = methodcaller("get", "peer_operator")
_NUM = {int, float}


def _is_digits(s, maxlen: int = 18) -> bool:
    return type(s) is str and 0 < len(s) <= maxlen and s.isascii() and s.isdigit()


_POW10 = np.array([10**k for k in range(20)], dtype=np.uint64)


class _Ctx:
    """Per-config caches: vectorised prefix tables (same result as ``stream.operators.operator_of``)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.op_cache: dict[str, bool] = {}
        # tables[k][v] = 1 competitor, 0 own/unknown, -1 no prefix of length k with value v
        self.tables = {}
        for k in (1, 2, 3, 4):
            t = np.full(10**k, -1, dtype=np.int8)
            for p, op in config.prefixes.items():
                if len(p) == k:
                    t[int(p)] = 1 if (op != config.own_operator and op != "unknown") else 0
            self.tables[k] = t
        self.cc = int(config.country_code) if config.country_code else 0
        self.cclen = len(config.country_code)

    def comp_of(self, peer: np.ndarray, plen: np.ndarray) -> np.ndarray:
        """Competitor flag per peer number (int value + digit count)."""
        has_cc = (plen > 11) & (peer // _POW10[np.clip(plen - self.cclen, 0, 19)] == np.uint64(self.cc))
        nlen = np.where(has_cc, plen - self.cclen, plen)
        nat = np.where(has_cc, peer % _POW10[np.clip(nlen, 0, 19)], peer)
        res = np.full(len(peer), -1, dtype=np.int8)
        for n in (4, 3):
            k = np.minimum(nlen, n)
            todo = res < 0
            for kk in np.unique(k[todo & (k >= 1)]).tolist():
                sel = todo & (k == kk)
                v = (nat[sel] // _POW10[nlen[sel] - kk]).astype(np.int64)
                res[sel] = self.tables[kk][v]
        return res == 1


_CTX: dict[int, _Ctx] = {}


def _ctx_for(config: EngineConfig) -> _Ctx:
    c = _CTX.get(id(config))
    if c is None or c.config is not config:
        if len(_CTX) > 64:
            _CTX.clear()
        c = _CTX[id(config)] = _Ctx(config)
    return c


_CHUNK = 128  # lines per joined parse when the whole batch's joined parse failed
_TYPE_CODE = {"call": 0, "sms": 1, "recharge": 2, "profile": 3}
_GET_TYPE = methodcaller("get", "type", _MISSING)
_GETTERS: dict[str, itemgetter] = {}
_GETS: dict[str, methodcaller] = {}
_DIRS = frozenset(("out", "in"))
_POP_TYPES = frozenset((type(None), str))
_DEC_KEY = methodcaller("decode", "utf-8", "replace")


def _bools(it, m: int) -> np.ndarray:
    return np.fromiter(it, bool, m)


def _take(seq, pos) -> list:
    """``[seq[j] for j in pos]`` at C speed."""
    return list(map(seq.__getitem__, pos))


def _drop(lst: list, desc: list) -> list:
    """Delete positions ``desc`` (descending) from ``lst`` in place; returns ``lst``. A few deletions
    (one memmove each) cost less than copying the kept rows."""
    if len(desc) * 16 < len(lst):
        for j in desc:
            del lst[j]
    else:
        keep = np.ones(len(lst), bool)
        keep[desc] = False
        lst[:] = _take(lst, np.flatnonzero(keep).tolist())
    return lst


def _parse_lines(raws: Sequence[bytes], start: int, rejects: list, objs: list) -> None:
    for i, r in enumerate(raws, start):
        try:
            objs.append(orjson.loads(r))
        except (orjson.JSONDecodeError, TypeError) as exc:
            rejects.append(Reject(i, "invalid_json", str(exc)[:120]))
            objs.append(_MISSING)


def _parse(raws: Sequence[bytes], rejects: list) -> list:
    """Parse all messages; invalid ones become rejects and ``_MISSING`` placeholders.

    One joined parse (``orjson.loads(b"[" + b",".join(chunk) + b"]")``) per chunk of ``_CHUNK``
    lines, and one parse per line only inside a chunk whose joined parse failed. A failed joined
    parse costs the work up to the error: with one bad line in a 5,000-line batch, a whole-batch
    attempt wasted half a batch on average, a chunk wastes half a chunk; on clean input the chunks
    cost the same as one joined parse (bench/decode_dirty.py)."""
    n = len(raws)
    loads = orjson.loads
    if n <= _CHUNK:
        try:
            objs = loads(b"[" + b",".join(raws) + b"]")
            if type(objs) is list and len(objs) == n:
                return objs
        except (orjson.JSONDecodeError, TypeError):
            pass
        objs = []
        _parse_lines(raws, 0, rejects, objs)
        return objs
    objs = []
    for s in range(0, n, _CHUNK):
        part = raws[s : s + _CHUNK]
        try:
            got = loads(b"[" + b",".join(part) + b"]")
            if type(got) is list and len(got) == len(part):
                objs += got
                continue
        except (orjson.JSONDecodeError, TypeError):
            pass
        _parse_lines(part, s, rejects, objs)
    return objs


# ---- candidate scans: a superset of the failing positions of a column, computed with C-level maps
# (no Python frame per element); the exact per-element rule then runs only over the candidates.


def _cand_digits(col: list, lo: int, hi: int, none_ok: bool = False) -> list:
    """Positions whose value is not a str of ``lo..hi`` ASCII digits (``None`` is fine when ``none_ok``)."""
    m = len(col)
    isstr = _bools(map(is_, map(type, col), repeat(str)), m)
    if isstr.all():
        pos, sub = None, col
    else:
        pos = np.flatnonzero(isstr)
        sub = _take(col, pos.tolist())
    k = len(sub)
    if k:
        ln = np.fromiter(map(len, sub), np.int64, k)
        ok = _bools(map(str.isdigit, sub), k) & _bools(map(str.isascii, sub), k) & (ln >= lo) & (ln <= hi)
        fail = np.flatnonzero(~ok) if pos is None else pos[~ok]
    else:
        fail = np.zeros(0, np.int64)
    if pos is not None:
        other = ~isstr
        if none_ok:
            other &= _bools(map(is_not, col, repeat(None)), m)
        fail = np.union1d(fail, np.flatnonzero(other))
    return fail.tolist()


def _cand_types(col: list, ok_types, m: int) -> np.ndarray:
    """Bool mask: the value's type is in ``ok_types``."""
    return _bools(map(ok_types.__contains__, map(type, col)), m)


def _cand_ts(ts: list) -> tuple[list, np.ndarray | None]:
    """(candidate positions, float64 array of the column when every value is a number)."""
    m = len(ts)
    if set(map(type, ts)) <= _NUM:
        ta = np.array(ts, dtype=np.float64)
        okt = (ta > 0) & (ta < 1e11)
        return ([] if okt.all() else np.flatnonzero(~okt).tolist()), ta
    isnum = _cand_types(ts, _NUM, m)
    pos = np.flatnonzero(isnum)
    sub = np.array(_take(ts, pos.tolist()), dtype=np.float64)
    fail = pos[~((sub > 0) & (sub < 1e11))]
    return np.union1d(fail, np.flatnonzero(~isnum)).tolist(), None


def _confirm(gbad: dict, cand, vals: list, f: str, ok, optional: bool = False) -> None:
    """The exact rule of one field (missing, then valid) over the candidate positions."""
    for j in cand:
        if j in gbad:
            continue
        v = vals[j]
        if v is _MISSING or (v is None and not optional):
            if not optional:
                gbad[j] = ("missing_field", f)
        elif not ok(v):
            gbad[j] = ("invalid_field", f)


def _ok_msisdn(m) -> bool:
    return _is_digits(m, 20) and len(m) >= 5


def _ok_ts(t) -> bool:
    return type(t) in _NUM and 0 < t < 1e11


def _ok_date(v) -> bool:
    if type(v) is not str:
        return False
    try:
        _dt.date.fromisoformat(v)
        return len(v) == 10
    except ValueError:
        return False


def _column(os_: list, f: str) -> tuple[list, list]:
    """(values of field ``f``, positions where it is absent) — ``_MISSING`` stands for absent."""
    g = _GETTERS.get(f)
    if g is None:
        g = _GETTERS[f] = itemgetter(f)
        _GETS[f] = methodcaller("get", f, _MISSING)
    try:
        return list(map(g, os_)), []
    except KeyError:
        vals = list(map(_GETS[f], os_))
        return vals, np.flatnonzero(_bools(map(is_, vals, repeat(_MISSING)), len(vals))).tolist()


def decode(
    raws: Sequence[bytes],
    keys: Sequence[bytes | None] | None = None,
    src: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
    *,
    config: EngineConfig,
    seq_start: int = 0,
) -> tuple[Batch, list[Reject]]:
    """Decode and validate. ``offsets`` default to ``seq_start + index`` (a running sequence).

    The cyclic GC is paused meanwhile: parsing creates one dict per event (no cycles), and gen-0
    collections triggered by them would cost 20-30% of the decode time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _decode(raws, keys, src, offsets, config=config, seq_start=seq_start)
    finally:
        if enabled:
            gc.enable()


def _decode(
    raws: Sequence[bytes],
    keys: Sequence[bytes | None] | None = None,
    src: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
    *,
    config: EngineConfig,
    seq_start: int = 0,
) -> tuple[Batch, list[Reject]]:
    """Decode and validate. ``offsets`` default to ``seq_start + index`` (a running sequence).

    Each check is a whole-column test first; when it fails, a C-level candidate scan names the
    positions that may fail and the exact per-element rule runs on those only. The checks run in a
    fixed order (missing fields, msisdn, ts, key, then the type's own fields), and the first failing
    one names an event's reject."""
    n = len(raws)
    rejects: list[Reject] = []
    if n == 0:
        return Batch.empty(), rejects
    ctx = _ctx_for(config)
    objs = _parse(raws, rejects)
    bad: dict[int, tuple[str, str]] = {}
    if set(map(type, objs)) == {dict}:
        types = list(map(_GET_TYPE, objs))
    else:
        isd = _bools(map(is_, map(type, objs), repeat(dict)), n)
        nd = np.flatnonzero(~isd).tolist()
        work = list(objs)
        for j in nd:
            o = objs[j]
            if o is not _MISSING:
                bad[j] = ("not_object", type(o).__name__)
            work[j] = _NO_OBJECT
        types = list(map(_GET_TYPE, work))
    try:
        codes = np.fromiter(map(_TYPE_CODE.get, types, repeat(-1)), np.int8, n)
    except TypeError:  # an unhashable "type" value
        codes = np.fromiter((_TYPE_CODE.get(t, -1) if type(t) is str else -1 for t in types), np.int8, n)
    if codes[0] == 0 and not codes.any():
        groups = {0: None}  # all calls
    else:
        groups = {c: np.flatnonzero(codes == c).tolist() for c in (0, 1, 2, 3)}
        for j in np.flatnonzero(codes < 0).tolist():
            if j in bad or objs[j] is _MISSING:
                continue
            t = types[j]
            bad[j] = ("missing_field", "type") if t is _MISSING else ("unknown_type", str(t)[:40])
    cols: dict[str, list] = {
        k: []
        for k in (
            "i",
            "kind",
            "m",
            "ts",
            "out",
            "peer",
            "comp",
            "hot",
            "dur",
            "imei",
            "cents",
            "plan",
            "act",
            "arpu",
            "kg",
        )
    }
    parts: list[dict] = []
    hot_set = set(config.competitor_hotlines)
    hot_maxlen = max(map(len, hot_set), default=0)

    def common(il: list | None, req: tuple[str, ...]):
        """Missing fields, msisdn, ts and the key. Returns (objects, {field: column}, ts array or None,
        {group position: (reason, detail)})."""
        os_ = objs if il is None else _take(objs, il)
        m = len(os_)
        gbad: dict[int, tuple[str, str]] = {}
        C = {}
        for f in ("msisdn", "ts") + req:
            vals, miss = _column(os_, f)
            C[f] = vals
            for j in miss:
                if j not in gbad:
                    gbad[j] = ("missing_field", f)
        ms = C["msisdn"]
        if not (
            set(map(type, ms)) <= {str}
            and all(map(str.isdigit, ms))
            and all(map(str.isascii, ms))
            and max(map(len, ms)) <= 20
            and min(map(len, ms)) >= 5
        ):
            for j in _cand_digits(ms, 5, 20):
                if j not in gbad and not _ok_msisdn(ms[j]):
                    gbad[j] = ("invalid_field", "msisdn")
        cand, ta = _cand_ts(C["ts"])
        ts = C["ts"]
        for j in cand:
            if j not in gbad and not _ok_ts(ts[j]):
                gbad[j] = ("invalid_field", "ts")
        if keys is not None:
            ks = keys if il is None else _take(keys, il)
            if set(map(type, ks)) == {bytes}:
                kd = list(map(_DEC_KEY, ks))
                cand = [] if kd == ms else np.flatnonzero(_bools(map(ne, kd, ms), m)).tolist()
            else:
                cand = range(m)
            for j in cand:
                k = ks[j]
                if k is not None and j not in gbad:
                    kstr = k.decode("utf-8", "replace") if isinstance(k, (bytes, bytearray, memoryview)) else str(k)
                    if kstr != ms[j]:
                        gbad[j] = ("key_mismatch", "")
        return os_, C, ta, gbad

    def flush(il: list | None, gbad: dict) -> tuple[list, list | None]:
        """Record a group's rejects; returns (raw indices, rejected positions in descending order or
        None when all are good)."""
        ii = list(range(n)) if il is None else il
        if not gbad:
            return ii, None
        for j, rd in gbad.items():
            bad[ii[j]] = rd
        drop = sorted(gbad, reverse=True)
        return _drop(list(ii), drop), drop

    # -------- calls and sms (same shape)
    for code, kind in ((0, KIND_CALL), (1, KIND_SMS)):
        il = groups.get(code, [])
        if il is not None and not il:
            continue
        req = ("direction", "peer", "duration_s") if kind == KIND_CALL else ("direction", "peer")
        os_, C, ta, gbad = common(il, req)
        m = len(os_)
        dirs = C["direction"]
        if not (set(map(type, dirs)) <= {str} and set(dirs) <= _DIRS):
            isstr = _cand_types(dirs, {str}, m)
            pos = np.flatnonzero(isstr)
            okd = _bools(map(_DIRS.__contains__, _take(dirs, pos.tolist())), len(pos))
            cand = np.union1d(pos[~okd], np.flatnonzero(~isstr)).tolist()
            _confirm(gbad, cand, dirs, "direction", lambda v: v == "out" or v == "in")
        peers = C["peer"]
        if not (
            set(map(type, peers)) <= {str}
            and all(map(str.isdigit, peers))
            and all(map(str.isascii, peers))
            and max(map(len, peers)) <= 19
            and min(map(len, peers)) >= 1
        ):
            _confirm(gbad, _cand_digits(peers, 1, 19), peers, "peer", lambda v: _is_digits(v, 19))
        if kind == KIND_CALL:
            durs = C["duration_s"]
            if not (set(map(type, durs)) <= {int} and min(durs) >= 0 and max(durs) <= 86400):
                isint = _bools(map(is_, map(type, durs), repeat(int)), m)
                pos = np.flatnonzero(isint)
                sub = _take(durs, pos.tolist())
                k = len(sub)
                okv = _bools(map(le, repeat(0), sub), k) & _bools(map(le, sub, repeat(86400)), k)
                cand = np.union1d(pos[~okv], np.flatnonzero(~isint)).tolist()
                _confirm(gbad, cand, durs, "duration_s", lambda v: type(v) is int and 0 <= v <= 86400)
            imeis = list(map(_GET_IMEI, os_))
            ti = set(map(type, imeis))
            # optional: absent (None) and valid strings pass; "" is the one falsy str (then a candidate)
            sub = imeis if ti <= {str} else list(filter(None, imeis)) if ti <= {str, type(None)} else None
            if sub is not None and (
                not sub
                or (
                    all(map(str.isdigit, sub))
                    and all(map(str.isascii, sub))
                    and max(map(len, sub)) <= 16
                    and min(map(len, sub)) >= 14
                )
            ):
                sub_ok = sub is imeis or imeis.count(None) + len(sub) == m
            else:
                sub_ok = False
            if not sub_ok:
                _confirm(
                    gbad,
                    _cand_digits(imeis, 14, 16, none_ok=True),
                    imeis,
                    "imei",
                    lambda v: v is None or (_is_digits(v, 16) and len(v) >= 14),
                    optional=True,
                )
        else:
            durs = imeis = None
        pops = list(map(_GET_POP, os_))
        tp = set(map(type, pops))
        if not tp <= _POP_TYPES:
            cand = np.flatnonzero(~_cand_types(pops, _POP_TYPES, m)).tolist()
            _confirm(gbad, cand, pops, "peer_operator", lambda v: v is None or type(v) is str, optional=True)
        gi, drop = flush(il, gbad)
        mg = len(gi)
        if mg == 0:
            continue
        # the columns are this function's own lists: the rejected rows are deleted in place
        gm, gp, gd, gpo, gdur, gim = C["msisdn"], peers, dirs, pops, durs, imeis
        if drop is None:
            tsa = ta if ta is not None else np.array(C["ts"], dtype=np.float64)
        else:
            for col in (gm, gp, gd, gpo, gdur, gim):
                if col is not None:
                    _drop(col, drop)
            tsa = np.delete(ta, drop) if ta is not None else np.array(_drop(C["ts"], drop), dtype=np.float64)
        out = np.fromiter(map("out".__eq__, gd), dtype=bool, count=mg)
        peer_u = np.array(list(map(int, gp)), dtype=np.uint64)
        plen = np.fromiter(map(len, gp), np.int64, mg)
        comp = ctx.comp_of(peer_u, plen)
        if not tp <= {type(None)}:
            for j in np.flatnonzero(_bools(map(is_not, gpo, repeat(None)), mg)).tolist():
                po = gpo[j]
                comp[j] = po != config.own_operator and po != "unknown"
        if kind == KIND_CALL:
            hot = np.zeros(mg, dtype=bool)
            short = np.flatnonzero((plen <= hot_maxlen) & out)
            for j in short.tolist():
                hot[j] = gp[j] in hot_set
            dur = np.array(gdur, dtype=np.int64)
            tg = set(map(type, gim))
            if tg <= {type(None)}:
                im = np.zeros(mg, np.uint64)
            elif tg <= {str}:
                im = np.array(list(map(int, gim)), dtype=np.uint64)
            else:  # valid imeis and None (absent)
                im = np.zeros(mg, np.uint64)
                there = np.flatnonzero(_bools(map(is_not, gim, repeat(None)), mg))
                im[there] = np.array(list(map(int, _take(gim, there.tolist()))), dtype=np.uint64)
        else:
            hot = np.zeros(mg, bool)
            dur = np.zeros(mg, np.int64)
            im = np.zeros(mg, np.uint64)
        parts.append(
            dict(
                i=np.array(gi, dtype=np.int64),
                kind=np.full(mg, kind, np.int8),
                m=gm,
                ts=tsa,
                out=out,
                peer=peer_u,
                comp=comp,
                hot=hot,
                dur=dur,
                imei=im,
                cents=np.zeros(mg, np.int64),
                plan=np.zeros(mg, np.int8),
                act=np.full(mg, -1, np.int64),
                arpu=np.full(mg, -1, np.int64),
                kg=np.full(mg, -1, np.int8),
            )
        )

    # -------- recharges
    il = groups.get(2)
    if il:
        os_, C, ta, gbad = common(il, ("amount",))
        m = len(os_)
        am = C["amount"]
        ok_amount = lambda v: type(v) in _NUM and math.isfinite(v) and 0 < v < 1e9  # noqa: E731
        if set(map(type, am)) <= _NUM:
            aa = np.array(am, dtype=np.float64)
            oka = np.isfinite(aa) & (aa > 0) & (aa < 1e9)
            if not oka.all():
                _confirm(gbad, np.flatnonzero(~oka).tolist(), am, "amount", ok_amount)
        else:
            aa = None
            _confirm(gbad, np.flatnonzero(~_cand_types(am, _NUM, m)).tolist(), am, "amount", ok_amount)
            isnum = _cand_types(am, _NUM, m)
            pos = np.flatnonzero(isnum)
            sub = np.array(_take(am, pos.tolist()), dtype=np.float64)
            _confirm(gbad, pos[~(np.isfinite(sub) & (sub > 0) & (sub < 1e9))].tolist(), am, "amount", ok_amount)
        # ts is finite: common's 0 < ts < 1e11 already holds for every event not rejected
        if aa is None:  # the non-numbers are rejected: the rest converts
            aa = np.array([v if type(v) in _NUM else 0.0 for v in am], dtype=np.float64)
        cents = np.rint(aa * 100.0)
        for j in np.flatnonzero(cents <= 0).tolist():
            if j not in gbad:
                gbad[j] = ("invalid_field", "amount")
        gi, drop = flush(il, gbad)
        mg = len(gi)
        if mg:
            if drop is None:
                gm, tsa, gc_ = C["msisdn"], ta if ta is not None else np.array(C["ts"], dtype=np.float64), cents
            else:
                gm = _drop(C["msisdn"], drop)
                tsa = np.delete(ta, drop) if ta is not None else np.array(_drop(C["ts"], drop), dtype=np.float64)
                gc_ = np.delete(cents, drop)
            parts.append(
                dict(
                    i=np.array(gi, dtype=np.int64),
                    kind=np.full(mg, KIND_RECHARGE, np.int8),
                    m=gm,
                    ts=tsa,
                    out=np.zeros(mg, bool),
                    peer=np.zeros(mg, np.uint64),
                    comp=np.zeros(mg, bool),
                    hot=np.zeros(mg, bool),
                    dur=np.zeros(mg, np.int64),
                    imei=np.zeros(mg, np.uint64),
                    cents=gc_.astype(np.int64),
                    plan=np.zeros(mg, np.int8),
                    act=np.full(mg, -1, np.int64),
                    arpu=np.full(mg, -1, np.int64),
                    kg=np.full(mg, -1, np.int8),
                )
            )

    # -------- profiles (rare: the exact rules element by element)
    il = groups.get(3)
    if il:
        os_, C, _, gbad = common(il, ("plan",))
        r = range(len(os_))
        get = lambda f: [o.get(f, _MISSING) for o in os_]  # noqa: E731
        _confirm(gbad, r, C["plan"], "plan", lambda v: v in PLAN_CODES if type(v) is str else False)
        _confirm(gbad, r, get("activated"), "activated", lambda v: v is None or _ok_date(v), optional=True)
        _confirm(
            gbad,
            r,
            get("arpu"),
            "arpu",
            lambda v: v is None or (type(v) in _NUM and math.isfinite(v) and 0 <= v < 1e7),
            optional=True,
        )
        _confirm(
            gbad, r, get("key_group_member"), "key_group_member", lambda v: v is None or type(v) is bool, optional=True
        )
        gi, drop = flush(il, gbad)
        epoch = _dt.date(1970, 1, 1)
        for i, j in zip(gi, r if drop is None else _drop(list(r), drop), strict=False):
            o = os_[j]
            cols["i"].append(i)
            cols["kind"].append(KIND_PROFILE)
            cols["m"].append(o["msisdn"])
            cols["ts"].append(o["ts"])
            for k, v in (
                ("out", False),
                ("peer", 0),
                ("comp", False),
                ("hot", False),
                ("dur", 0),
                ("imei", 0),
                ("cents", 0),
            ):
                cols[k].append(v)
            cols["plan"].append(PLAN_CODES[o["plan"]])
            a = o.get("activated")
            cols["act"].append((_dt.date.fromisoformat(a) - epoch).days if a else -1)
            ar = o.get("arpu")
            cols["arpu"].append(int(round(ar * 100)) if ar is not None else -1)
            kg = o.get("key_group_member")
            cols["kg"].append(-1 if kg is None else int(kg))

    for i, (reason, detail) in bad.items():
        rejects.append(Reject(i, reason, detail))
    rejects.sort(key=lambda r: r.index)

    if cols["i"]:
        parts.append(
            dict(
                i=np.array(cols["i"], dtype=np.int64),
                kind=np.array(cols["kind"], dtype=np.int8),
                m=cols["m"],
                ts=np.array(cols["ts"], dtype=np.float64),
                out=np.array(cols["out"], dtype=bool),
                peer=np.array(cols["peer"], dtype=np.uint64),
                comp=np.array(cols["comp"], dtype=bool),
                hot=np.array(cols["hot"], dtype=bool),
                dur=np.array(cols["dur"], dtype=np.int64),
                imei=np.array(cols["imei"], dtype=np.uint64),
                cents=np.array(cols["cents"], dtype=np.int64),
                plan=np.array(cols["plan"], dtype=np.int8),
                act=np.array(cols["act"], dtype=np.int64),
                arpu=np.array(cols["arpu"], dtype=np.int64),
                kg=np.array(cols["kg"], dtype=np.int8),
            )
        )
    if not parts:
        return Batch.empty(), rejects
    if len(parts) == 1:
        P = parts[0]
    else:
        P = {
            k: ([x for p in parts for x in p[k]] if k == "m" else np.concatenate([p[k] for p in parts]))
            for k in parts[0]
        }
    ii = P["i"]
    order = None
    if len(ii) > 1 and np.any(ii[1:] < ii[:-1]):
        order = np.argsort(ii, kind="stable")
    src_a = np.zeros(n, dtype=np.int64) if src is None else np.asarray(src, dtype=np.int64)
    off_a = (
        np.arange(seq_start, seq_start + n, dtype=np.int64) if offsets is None else np.asarray(offsets, dtype=np.int64)
    )
    ts = P["ts"]
    batch = Batch(
        idx=ii,
        src=src_a[ii],
        off=off_a[ii],
        msisdn=P["m"],
        kind=P["kind"],
        ts=ts,
        day=np.floor((ts + config.utc_offset_s) / 86400.0).astype(np.int64),
        out=P["out"],
        peer=P["peer"],
        comp=P["comp"],
        hotline=P["hot"],
        dur=P["dur"],
        imei=P["imei"],
        cents=P["cents"],
        plan=P["plan"],
        activated=P["act"],
        arpu_c=P["arpu"],
        key_group=P["kg"],
    )
    if order is not None:
        batch = batch.take(order)
    return batch, rejects
