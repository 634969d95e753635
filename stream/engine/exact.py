"""The contract's decode rules, field by field: raw bytes → columnar :class:`Batch` + rejects. Pure.

:func:`decode_exact` is the reference engine's decoder and the typed fast path's
(:mod:`stream.engine.typed`) for the lines it cannot vouch for; :mod:`stream.engine.decode` is the
public face of both. The batch is parsed with one ``orjson.loads(b"[" + b",".join(chunk) + b"]")``
per chunk of 128 lines, one message at a time only inside a chunk whose joined parse failed; then
each event type is validated column by column: a cheap whole-column check (``set(map(type, col))``,
``all(map(...))``) and, only when it fails, a candidate scan with C-level maps into numpy masks that
names the positions which may fail, and the exact per-element rule on those only. Rejects never stop
the batch.
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

__all__ = ["Batch", "Reject", "REJECT_REASONS", "decode_exact", "PLAN_CODES", "mix64"]

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


def decode_exact(
    raws: Sequence[bytes],
    keys: Sequence[bytes | None] | None = None,
    src: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
    *,
    config: EngineConfig,
    seq_start: int = 0,
) -> tuple[Batch, list[Reject]]:
    """:func:`stream.engine.decode.decode` by the contract's rules field by field, over dicts parsed
    by orjson: the reference engine's decoder, and the fast path's for the lines it cannot vouch for.
    The cyclic GC is paused meanwhile (:func:`gc_paused`)."""
    return gc_paused(_decode, raws, keys, src, offsets, config, seq_start)


def gc_paused(fn, *args):
    """``fn(*args)`` with the cyclic GC paused: parsing creates one object per event (no cycles), and
    gen-0 collections triggered by them would cost 20-30% of the decode time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return fn(*args)
    finally:
        if enabled:
            gc.enable()


def _decode(
    raws: Sequence[bytes], keys, src, offsets, config: EngineConfig, seq_start: int
) -> tuple[Batch, list[Reject]]:
    """:func:`decode_exact`'s work (the cyclic GC already paused by it).

    Each check is a whole-column test first; when it fails, a C-level candidate scan names the
    positions that may fail and the exact per-element rule runs on those only. The checks run in a
    fixed order (missing fields, msisdn, ts, key, then the type's own fields), and the first failing
    one names an event's reject."""
    n = len(raws)
    if n == 0:
        return Batch.empty(), []
    parts, rejects = decode_parts(raws, keys, config)
    if not parts:
        return Batch.empty(), rejects
    return _assemble(parts, n, src, offsets, seq_start, config), rejects


def decode_parts(raws: Sequence[bytes], keys, config: EngineConfig) -> tuple[list[dict], list[Reject]]:
    """The exact rules over ``raws``: the kept rows as parts (one per event type, columns keyed as
    :func:`_assemble` reads them, ``"i"`` the positions in ``raws``) and the rejects, by position."""
    n = len(raws)
    rejects: list[Reject] = []
    ctx = _ctx_for(config)
    objs = _parse(raws, rejects)
    bad: dict[int, tuple[str, str]] = {}
    groups = _groups(objs, n, bad)
    parts: list[dict] = []
    for code, kind in ((0, KIND_CALL), (1, KIND_SMS)):
        il = groups.get(code, [])
        if il is not None and not il:
            continue
        parts.append(_contacts(objs, keys, il, kind, n, bad, ctx))
    il = groups.get(2)
    if il:
        parts.append(_recharges(objs, keys, il, n, bad))
    il = groups.get(3)
    if il:
        parts.append(_profiles(objs, keys, il, n, bad))
    for i, (reason, detail) in bad.items():
        rejects.append(Reject(i, reason, detail))
    rejects.sort(key=lambda r: r.index)
    return [p for p in parts if p is not None], rejects


def _groups(objs: list, n: int, bad: dict) -> dict[int, list | None]:
    """Positions per type code (0 calls, 1 sms, 2 recharges, 3 profiles; ``{0: None}`` when all are
    calls); records the not_object, missing type and unknown_type rejects in ``bad``."""
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
        return {0: None}  # all calls
    groups = {c: np.flatnonzero(codes == c).tolist() for c in (0, 1, 2, 3)}
    for j in np.flatnonzero(codes < 0).tolist():
        if j in bad or objs[j] is _MISSING:
            continue
        t = types[j]
        bad[j] = ("missing_field", "type") if t is _MISSING else ("unknown_type", str(t)[:40])
    return groups


def _digits_within(col: list, lo: int, hi: int) -> bool:
    """Whole-column test of a non-empty column of str: every value ``lo..hi`` ASCII digits (``lo`` >= 1:
    an empty value adds nothing to the joined string, the length bound catches it)."""
    s = "".join(col)
    return s.isascii() and s.isdigit() and max(map(len, col)) <= hi and min(map(len, col)) >= lo


def _common(objs: list, keys, il: list | None, req: tuple[str, ...]):
    """Missing fields, msisdn, ts and the key of the group ``il`` (None: all of ``objs``). Returns
    (objects, {field: column}, ts array or None, {group position: (reason, detail)})."""
    os_ = objs if il is None else _take(objs, il)
    gbad: dict[int, tuple[str, str]] = {}
    C = {}
    for f in ("msisdn", "ts") + req:
        vals, miss = _column(os_, f)
        C[f] = vals
        for j in miss:
            if j not in gbad:
                gbad[j] = ("missing_field", f)
    ms = C["msisdn"]
    if not (set(map(type, ms)) <= {str} and _digits_within(ms, 5, 20)):
        for j in _cand_digits(ms, 5, 20):
            if j not in gbad and not _ok_msisdn(ms[j]):
                gbad[j] = ("invalid_field", "msisdn")
    cand, ta = _cand_ts(C["ts"])
    ts = C["ts"]
    for j in cand:
        if j not in gbad and not _ok_ts(ts[j]):
            gbad[j] = ("invalid_field", "ts")
    if keys is not None:
        _check_keys(keys if il is None else _take(keys, il), ms, gbad)
    return os_, C, ta, gbad


def _key_candidates(ks: Sequence, ms: list):
    """Positions whose key may not be the event's msisdn, found at memory speed when every key is
    bytes and no msisdn holds a newline: the keys joined by newlines against the msisdns' UTF-8
    joined so (equal: none; otherwise the parts, which then line up one to one, compared). None
    when it cannot be told this way (a key that is not bytes, an msisdn that is not a str)."""
    m = len(ms)
    if len(ks) != m or m == 0:
        return None
    try:
        jm = "\n".join(ms).encode("utf-8")
        jk = b"\n".join(ks)
    except (TypeError, UnicodeEncodeError):
        return None
    if jm.count(b"\n") != m - 1:
        return None
    if jk == jm:
        return []
    return np.flatnonzero(_bools(map(ne, ks, jm.split(b"\n")), m)).tolist()


def _check_keys(ks: Sequence, ms: list, gbad: dict) -> None:
    """key_mismatch: a key (when there is one) that is not the event's msisdn."""
    cand = _key_candidates(ks, ms)
    if cand is None:
        cand = range(len(ms))
    for j in cand:
        k = ks[j]
        if k is not None and j not in gbad:
            kstr = k.decode("utf-8", "replace") if isinstance(k, (bytes, bytearray, memoryview)) else str(k)
            if kstr != ms[j]:
                gbad[j] = ("key_mismatch", "")


def _flush(il: list | None, n: int, gbad: dict, bad: dict) -> tuple[list, list | None]:
    """Record a group's rejects in ``bad``; returns (raw indices, rejected positions in descending
    order or None when all are good)."""
    ii = list(range(n)) if il is None else il
    if not gbad:
        return ii, None
    for j, rd in gbad.items():
        bad[ii[j]] = rd
    drop = sorted(gbad, reverse=True)
    return _drop(list(ii), drop), drop


def _kept_ts(ts: list, ta: np.ndarray | None, drop: list | None) -> np.ndarray:
    """The ts column of the kept rows as float64 (``ta``: the whole column's array, when it was built)."""
    if drop is None:
        return ta if ta is not None else np.array(ts, dtype=np.float64)
    return np.delete(ta, drop) if ta is not None else np.array(_drop(ts, drop), dtype=np.float64)


# the columns of a part beyond i, kind, m and ts: (name, dtype, value when the event type has none)
_PART_FILL = (
    ("out", bool, False),
    ("peer", np.uint64, 0),
    ("comp", bool, False),
    ("hot", bool, False),
    ("dur", np.int64, 0),
    ("imei", np.uint64, 0),
    ("cents", np.int64, 0),
    ("plan", np.int8, 0),
    ("act", np.int64, -1),
    ("arpu", np.int64, -1),
    ("kg", np.int8, -1),
)


def _part(gi: list, kind: int, ms: list, ts: np.ndarray, **given: np.ndarray) -> dict:
    """One group's columns: ``given`` ones, the others filled with their no-value."""
    mg = len(gi)
    p = {"i": np.array(gi, dtype=np.int64), "kind": np.full(mg, kind, np.int8), "m": ms, "ts": ts}
    for k, dt, fill in _PART_FILL:
        v = given.get(k)
        p[k] = np.full(mg, fill, dt) if v is None else v
    return p


def _contacts(objs: list, keys, il: list | None, kind: int, n: int, bad: dict, ctx: _Ctx) -> dict | None:
    """Calls or SMS (same shape): validate, record the rejects, return the kept rows' part (None: none kept)."""
    is_call = kind == KIND_CALL
    req = ("direction", "peer", "duration_s") if is_call else ("direction", "peer")
    os_, C, ta, gbad = _common(objs, keys, il, req)
    m = len(os_)
    dirs = C["direction"]
    if not (set(map(type, dirs)) <= {str} and set(dirs) <= _DIRS):
        isstr = _cand_types(dirs, {str}, m)
        pos = np.flatnonzero(isstr)
        okd = _bools(map(_DIRS.__contains__, _take(dirs, pos.tolist())), len(pos))
        cand = np.union1d(pos[~okd], np.flatnonzero(~isstr)).tolist()
        _confirm(gbad, cand, dirs, "direction", lambda v: v == "out" or v == "in")
    peers = C["peer"]
    if not (set(map(type, peers)) <= {str} and _digits_within(peers, 1, 19)):
        _confirm(gbad, _cand_digits(peers, 1, 19), peers, "peer", lambda v: _is_digits(v, 19))
    if is_call:
        durs = C["duration_s"]
        _check_durations(durs, m, gbad)
        imeis = list(map(_GET_IMEI, os_))
        _check_imeis(imeis, m, gbad)
    else:
        durs = imeis = None
    pops = list(map(_GET_POP, os_))
    tp = set(map(type, pops))
    if not tp <= _POP_TYPES:
        cand = np.flatnonzero(~_cand_types(pops, _POP_TYPES, m)).tolist()
        _confirm(gbad, cand, pops, "peer_operator", lambda v: v is None or type(v) is str, optional=True)
    gi, drop = _flush(il, n, gbad, bad)
    if not gi:
        return None
    # the columns are this module's own lists: the rejected rows are deleted in place
    gm = C["msisdn"]
    tsa = _kept_ts(C["ts"], ta, drop)
    if drop is not None:
        for col in (gm, peers, dirs, pops, durs, imeis):
            if col is not None:
                _drop(col, drop)
    return _contact_part(gi, kind, gm, tsa, dirs, peers, None if tp <= {type(None)} else pops, durs, imeis, ctx)


def _check_durations(durs: list, m: int, gbad: dict) -> None:
    if not (set(map(type, durs)) <= {int} and min(durs) >= 0 and max(durs) <= 86400):
        isint = _bools(map(is_, map(type, durs), repeat(int)), m)
        pos = np.flatnonzero(isint)
        sub = _take(durs, pos.tolist())
        k = len(sub)
        okv = _bools(map(le, repeat(0), sub), k) & _bools(map(le, sub, repeat(86400)), k)
        cand = np.union1d(pos[~okv], np.flatnonzero(~isint)).tolist()
        _confirm(gbad, cand, durs, "duration_s", lambda v: type(v) is int and 0 <= v <= 86400)


def _check_imeis(imeis: list, m: int, gbad: dict) -> None:
    ti = set(map(type, imeis))
    # optional: absent (None) and valid strings pass; "" is the one falsy str (then a candidate)
    sub = imeis if ti <= {str} else list(filter(None, imeis)) if ti <= {str, type(None)} else None
    if sub is not None and (not sub or _digits_within(sub, 14, 16)):
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


def _contact_part(gi, kind, gm, tsa, gd, gp, gpo, gdur, gim, ctx: _Ctx, peers=None, imei_v=None) -> dict:
    """The part of the kept calls or SMS (``gpo``: the peer_operator column, None when none is set;
    ``peers``: (lengths, values) of ``gp`` and ``imei_v`` the values of ``gim`` when the caller has
    them already)."""
    config = ctx.config
    mg = len(gi)
    out = np.fromiter(map("out".__eq__, gd), dtype=bool, count=mg)
    if peers is None:
        peer_u = np.array(list(map(int, gp)), dtype=np.uint64)
        plen = np.fromiter(map(len, gp), np.int64, mg)
    else:
        plen, peer_u = peers
    comp = ctx.comp_of(peer_u, plen)
    if gpo is not None:
        for j in np.flatnonzero(_bools(map(is_not, gpo, repeat(None)), mg)).tolist():
            po = gpo[j]
            comp[j] = po != config.own_operator and po != "unknown"
    if kind != KIND_CALL:
        return _part(gi, kind, gm, tsa, out=out, peer=peer_u, comp=comp)
    hot = np.zeros(mg, dtype=bool)
    hot_set = set(config.competitor_hotlines)
    hot_maxlen = max(map(len, hot_set), default=0)
    short = np.flatnonzero((plen <= hot_maxlen) & out)
    for j in short.tolist():
        hot[j] = gp[j] in hot_set
    dur = np.array(gdur, dtype=np.int64)
    tg = {str} if imei_v is not None else set(map(type, gim))
    if imei_v is not None:
        im = imei_v
    elif tg <= {type(None)}:
        im = np.zeros(mg, np.uint64)
    elif tg <= {str}:
        im = np.array(list(map(int, gim)), dtype=np.uint64)
    else:  # valid imeis and None (absent)
        im = np.zeros(mg, np.uint64)
        there = np.flatnonzero(_bools(map(is_not, gim, repeat(None)), mg))
        im[there] = np.array(list(map(int, _take(gim, there.tolist()))), dtype=np.uint64)
    return _part(gi, kind, gm, tsa, out=out, peer=peer_u, comp=comp, hot=hot, dur=dur, imei=im)


def _recharges(objs: list, keys, il: list, n: int, bad: dict) -> dict | None:
    """Validate the recharges, record the rejects, return the kept rows' part (None: none kept)."""
    os_, C, ta, gbad = _common(objs, keys, il, ("amount",))
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
    gi, drop = _flush(il, n, gbad, bad)
    if not gi:
        return None
    tsa = _kept_ts(C["ts"], ta, drop)
    if drop is None:
        gm, gc_ = C["msisdn"], cents
    else:
        gm, gc_ = _drop(C["msisdn"], drop), np.delete(cents, drop)
    return _part(gi, KIND_RECHARGE, gm, tsa, cents=gc_.astype(np.int64))


def _profiles(objs: list, keys, il: list, n: int, bad: dict) -> dict | None:
    """Profiles (rare: the exact rules element by element); returns the kept rows' part (None: none kept)."""
    os_, C, _, gbad = _common(objs, keys, il, ("plan",))
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
    gi, drop = _flush(il, n, gbad, bad)
    if not gi:
        return None
    kept = _take(os_, r if drop is None else _drop(list(r), drop))
    epoch = _dt.date(1970, 1, 1)
    act, arpu, kg = [], [], []
    for o in kept:
        a = o.get("activated")
        act.append((_dt.date.fromisoformat(a) - epoch).days if a else -1)
        ar = o.get("arpu")
        arpu.append(int(round(ar * 100)) if ar is not None else -1)
        g = o.get("key_group_member")
        kg.append(-1 if g is None else int(g))
    return _part(
        gi,
        KIND_PROFILE,
        [o["msisdn"] for o in kept],
        np.array([o["ts"] for o in kept], dtype=np.float64),
        plan=np.array([PLAN_CODES[o["plan"]] for o in kept], dtype=np.int8),
        act=np.array(act, dtype=np.int64),
        arpu=np.array(arpu, dtype=np.int64),
        kg=np.array(kg, dtype=np.int8),
    )


def _assemble(parts: list[dict], n: int, src, offsets, seq_start: int, config: EngineConfig) -> Batch:
    """The groups' parts as one batch in arrival order."""
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
    return batch
