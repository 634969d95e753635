"""Raw bytes → columnar :class:`Batch` + rejects. Pure: shared by the vectorised and the reference engine.

The whole batch is parsed with one ``orjson.loads(b"[" + b",".join(raws) + b"]")`` (falling back to one
message at a time when that fails); then each event type is validated column by column: a cheap
whole-column type check (``set(map(type, col))``) and, only when it fails, a per-element scan that
names the failing events. Rejects never stop the batch.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from operator import itemgetter, methodcaller
from typing import NamedTuple, Sequence

import numpy as np
import orjson

from stream.contract import KIND_CALL, KIND_PROFILE, KIND_RECHARGE, KIND_SMS

from .config import EngineConfig

__all__ = ["Batch", "Reject", "REJECT_REASONS", "decode", "PLAN_CODES", "mix64"]

REJECT_REASONS = ("invalid_json", "not_object", "unknown_type", "missing_field", "invalid_field",
                  "key_mismatch", "late", "future")

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

    def take(self, sel: np.ndarray) -> "Batch":
        sel = np.asarray(sel)
        if sel.dtype == bool:
            pos = np.flatnonzero(sel)
        else:
            pos = sel
        kw = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            kw[name] = [v[i] for i in pos.tolist()] if isinstance(v, list) else v[pos]
        return Batch(**kw)

    @staticmethod
    def empty() -> "Batch":
        z = lambda dt: np.zeros(0, dtype=dt)  # noqa: E731
        return Batch(z(np.int64), z(np.int64), z(np.int64), [], z(np.int8), z(np.float64), z(np.int64), z(bool),
                     z(np.uint64), z(bool), z(bool), z(np.int64), z(np.uint64), z(np.int64), z(np.int8),
                     z(np.int64), z(np.int64), z(np.int8))


_MISSING = object()
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


def _parse(raws: Sequence[bytes], rejects: list) -> list:
    """Parse all messages; invalid ones become rejects and ``_MISSING`` placeholders."""
    n = len(raws)
    try:
        objs = orjson.loads(b"[" + b",".join(raws) + b"]")
        if type(objs) is list and len(objs) == n:
            return objs
    except (orjson.JSONDecodeError, TypeError):
        pass
    objs = []
    for i, r in enumerate(raws):
        try:
            objs.append(orjson.loads(r))
        except (orjson.JSONDecodeError, TypeError) as exc:
            rejects.append(Reject(i, "invalid_json", str(exc)[:120]))
            objs.append(_MISSING)
    return objs


def decode(raws: Sequence[bytes], keys: Sequence[bytes | None] | None = None, src: np.ndarray | None = None,
           offsets: np.ndarray | None = None, *, config: EngineConfig, seq_start: int = 0) -> tuple[Batch, list[Reject]]:
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
    """Decode and validate. ``offsets`` default to ``seq_start + index`` (a running sequence)."""
    n = len(raws)
    rejects: list[Reject] = []
    if n == 0:
        return Batch.empty(), rejects
    ctx = _ctx_for(config)
    objs = _parse(raws, rejects)
    bad: dict[int, tuple[str, str]] = {}
    groups: dict[str, list[int]] = {"call": [], "sms": [], "recharge": [], "profile": []}
    pre: dict | None = None  # columns already extracted by the all-calls fast path
    if set(map(type, objs)) == {dict}:
        try:
            cols0 = [list(map(itemgetter(f), objs)) for f in _CALL_FIELDS]
        except KeyError:
            cols0 = None
        if cols0 is not None and set(map(type, cols0[0])) == {str} and set(cols0[0]) == {"call"}:
            pre = dict(zip(_CALL_FIELDS, cols0))
        types = cols0[0] if pre is not None else [o.get("type", _MISSING) for o in objs]
    else:
        types = [o.get("type", _MISSING) if type(o) is dict else _MISSING for o in objs]
    if pre is not None:
        groups["call"] = list(range(n))
    elif set(map(type, types)) <= {str} and set(types) <= {"call"}:
        groups["call"] = list(range(n))
    else:
        for i, t in enumerate(types):
            g = groups.get(t) if type(t) is str else None
            if g is not None:
                g.append(i)
                continue
            o = objs[i]
            if o is _MISSING:
                continue  # already rejected as invalid_json
            if type(o) is not dict:
                bad[i] = ("not_object", type(o).__name__)
            elif t is _MISSING:
                bad[i] = ("missing_field", "type")
            else:
                bad[i] = ("unknown_type", str(t)[:40])
    cols: dict[str, list] = {k: [] for k in ("i", "kind", "m", "ts", "out", "peer", "comp", "hot", "dur", "imei", "cents", "plan", "act", "arpu", "kg")}
    parts: list[dict] = []
    hot_set = set(config.competitor_hotlines)
    hot_maxlen = max(map(len, hot_set), default=0)

    def common(idx: list[int], req: tuple[str, ...]):
        """Check msisdn, ts and the required fields; returns (objects, {field: column})."""
        os_ = objs if len(idx) == n else [objs[i] for i in idx]
        names = ("msisdn", "ts") + req
        try:
            if pre is not None and len(idx) == n:
                cols_ = {f: pre[f] for f in names}
            else:
                cols_ = {f: list(map(itemgetter(f), os_)) for f in names}
        except KeyError:
            cols_ = {}
            for f in names:
                vals = [o.get(f, _MISSING) for o in os_]
                for i, v in zip(idx, vals):
                    if v is _MISSING and i not in bad:
                        bad[i] = ("missing_field", f)
                cols_[f] = vals
        ms = cols_["msisdn"]
        if not (set(map(type, ms)) <= {str} and all(map(str.isdigit, ms)) and all(map(str.isascii, ms))
                and max(map(len, ms)) <= 20 and min(map(len, ms)) >= 5):
            for i, m in zip(idx, ms):
                if i not in bad and not (_is_digits(m, 20) and len(m) >= 5):
                    bad[i] = ("invalid_field", "msisdn")
        ts = cols_["ts"]
        if set(map(type, ts)) <= _NUM:
            ta = np.array(ts, dtype=np.float64)
            okt = (ta > 0) & (ta < 1e11)
            if not okt.all():
                for j in np.flatnonzero(~okt).tolist():
                    if idx[j] not in bad:
                        bad[idx[j]] = ("invalid_field", "ts")
        else:
            for i, t in zip(idx, ts):
                if i not in bad and not (type(t) in _NUM and 0 < t < 1e11):
                    bad[i] = ("invalid_field", "ts")
        if keys is not None:
            for i, m in zip(idx, ms):
                k = keys[i]
                if k is not None and i not in bad:
                    ks = k.decode("utf-8", "replace") if isinstance(k, (bytes, bytearray, memoryview)) else str(k)
                    if ks != m:
                        bad[i] = ("key_mismatch", "")
        return os_, cols_

    def check(idx, os_, f, ok, optional=False, vals=None):
        if vals is None:
            vals = [o.get(f, _MISSING) for o in os_]
        for i, v in zip(idx, vals):
            if i in bad:
                continue
            if v is _MISSING or (v is None and not optional):
                if not optional:
                    bad[i] = ("missing_field", f)
            elif not ok(v):
                bad[i] = ("invalid_field", f)
        return vals

    def finite_ts(idx, os_):
        for i, o in zip(idx, os_):
            if i not in bad:
                t = o["ts"]
                if not (t > 0 and math.isfinite(t) and t < 1e11):
                    bad[i] = ("invalid_field", "ts")

    # -------- calls and sms (same shape)
    for tname, kind in (("call", KIND_CALL), ("sms", KIND_SMS)):
        idx = groups[tname]
        if not idx:
            continue
        req = ("direction", "peer", "duration_s") if kind == KIND_CALL else ("direction", "peer")
        os_, C = common(idx, req)
        dirs = C["direction"]
        if not (set(map(type, dirs)) <= {str} and set(dirs) <= {"out", "in"}):
            check(idx, os_, "direction", lambda v: v == "out" or v == "in", vals=dirs)
        peers = C["peer"]
        if not (set(map(type, peers)) <= {str} and all(map(str.isdigit, peers)) and all(map(str.isascii, peers))
                and max(map(len, peers)) <= 19 and min(map(len, peers)) >= 1):
            check(idx, os_, "peer", lambda v: _is_digits(v, 19), vals=peers)
        if kind == KIND_CALL:
            durs = C["duration_s"]
            if not (set(map(type, durs)) <= {int} and min(durs) >= 0 and max(durs) <= 86400):
                check(idx, os_, "duration_s", lambda v: type(v) is int and 0 <= v <= 86400, vals=durs)
            imeis = list(map(_GET_IMEI, os_))
            ti = set(map(type, imeis))
            if ti <= {str}:
                if not (all(map(str.isdigit, imeis)) and all(map(str.isascii, imeis))
                        and max(map(len, imeis)) <= 16 and min(map(len, imeis)) >= 14):
                    check(idx, os_, "imei", lambda v: _is_digits(v, 16) and len(v) >= 14, optional=True, vals=imeis)
            elif not ti <= {type(None)}:
                check(idx, os_, "imei", lambda v: v is None or (_is_digits(v, 16) and len(v) >= 14), optional=True, vals=imeis)
        else:
            durs = None
            imeis = None
        pops = list(map(_GET_POP, os_))
        if not set(map(type, pops)) <= {type(None), str}:
            check(idx, os_, "peer_operator", lambda v: v is None or type(v) is str, optional=True, vals=pops)
        good = [j for j, i in enumerate(idx) if i not in bad] if bad else range(len(idx))
        if len(good) == len(idx):
            gi, gm, gp, gd, gpo = idx, list(C["msisdn"]), peers, dirs, pops
            gts = C["ts"]
            gdur = durs
            gim = imeis
        else:
            gi = [idx[j] for j in good]
            gm = [C["msisdn"][j] for j in good]
            gts = [C["ts"][j] for j in good]
            gp = [peers[j] for j in good]
            gd = [dirs[j] for j in good]
            gpo = [pops[j] for j in good]
            gdur = [durs[j] for j in good] if durs is not None else None
            gim = [imeis[j] for j in good] if imeis is not None else None
        m = len(gi)
        if m == 0:
            continue
        out = np.fromiter(map("out".__eq__, gd), dtype=bool, count=m)
        peer_u = np.array(list(map(int, gp)), dtype=np.uint64)
        plen = np.fromiter(map(len, gp), np.int64, m)
        comp = ctx.comp_of(peer_u, plen)
        if not set(map(type, gpo)) <= {type(None)}:
            for j, po in enumerate(gpo):
                if po is not None:
                    comp[j] = po != config.own_operator and po != "unknown"
        if kind == KIND_CALL:
            hot = np.zeros(m, dtype=bool)
            short = np.flatnonzero((plen <= hot_maxlen) & out)
            for j in short.tolist():
                hot[j] = gp[j] in hot_set
            dur = np.array(gdur, dtype=np.int64)
            tg = set(map(type, gim))
            if tg <= {type(None)}:
                im = np.zeros(m, np.uint64)
            elif tg <= {str}:
                im = np.array(list(map(int, gim)), dtype=np.uint64)
            else:
                im = np.array([int(x) if x else 0 for x in gim], dtype=np.uint64)
        else:
            hot = np.zeros(m, bool)
            dur = np.zeros(m, np.int64)
            im = np.zeros(m, np.uint64)
        parts.append(dict(i=np.array(gi, dtype=np.int64), kind=np.full(m, kind, np.int8), m=list(gm),
                          ts=np.array(gts, dtype=np.float64), out=out, peer=peer_u, comp=comp,
                          hot=hot, dur=dur, imei=im, cents=np.zeros(m, np.int64), plan=np.zeros(m, np.int8),
                          act=np.full(m, -1, np.int64), arpu=np.full(m, -1, np.int64), kg=np.full(m, -1, np.int8)))

    # -------- recharges
    idx = groups["recharge"]
    if idx:
        os_, _ = common(idx, ("amount",))
        check(idx, os_, "amount", lambda v: type(v) in _NUM and math.isfinite(v) and 0 < v < 1e9)
        finite_ts(idx, os_)
        for j, i in enumerate(idx):
            if i in bad:
                continue
            o = os_[j]
            cents = int(round(o["amount"] * 100))
            if cents <= 0:
                bad[i] = ("invalid_field", "amount")
                continue
            cols["i"].append(i)
            cols["kind"].append(KIND_RECHARGE)
            cols["m"].append(o["msisdn"])
            cols["ts"].append(o["ts"])
            for k, v in (("out", False), ("peer", 0), ("comp", False), ("hot", False), ("dur", 0), ("imei", 0),
                         ("plan", 0), ("act", -1), ("arpu", -1), ("kg", -1)):
                cols[k].append(v)
            cols["cents"].append(cents)

    # -------- profiles
    idx = groups["profile"]
    if idx:
        os_, _ = common(idx, ("plan",))
        check(idx, os_, "plan", lambda v: v in PLAN_CODES if type(v) is str else False)

        def ok_date(v):
            if type(v) is not str:
                return False
            try:
                import datetime as _dt
                _dt.date.fromisoformat(v)
                return len(v) == 10
            except ValueError:
                return False

        check(idx, os_, "activated", lambda v: v is None or ok_date(v), optional=True)
        check(idx, os_, "arpu", lambda v: v is None or (type(v) in _NUM and math.isfinite(v) and 0 <= v < 1e7), optional=True)
        check(idx, os_, "key_group_member", lambda v: v is None or type(v) is bool, optional=True)
        finite_ts(idx, os_)
        import datetime as _dt
        epoch = _dt.date(1970, 1, 1)
        for j, i in enumerate(idx):
            if i in bad:
                continue
            o = os_[j]
            cols["i"].append(i)
            cols["kind"].append(KIND_PROFILE)
            cols["m"].append(o["msisdn"])
            cols["ts"].append(o["ts"])
            for k, v in (("out", False), ("peer", 0), ("comp", False), ("hot", False), ("dur", 0), ("imei", 0), ("cents", 0)):
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
        parts.append(dict(i=np.array(cols["i"], dtype=np.int64), kind=np.array(cols["kind"], dtype=np.int8),
                          m=cols["m"], ts=np.array(cols["ts"], dtype=np.float64), out=np.array(cols["out"], dtype=bool),
                          peer=np.array(cols["peer"], dtype=np.uint64), comp=np.array(cols["comp"], dtype=bool),
                          hot=np.array(cols["hot"], dtype=bool), dur=np.array(cols["dur"], dtype=np.int64),
                          imei=np.array(cols["imei"], dtype=np.uint64), cents=np.array(cols["cents"], dtype=np.int64),
                          plan=np.array(cols["plan"], dtype=np.int8), act=np.array(cols["act"], dtype=np.int64),
                          arpu=np.array(cols["arpu"], dtype=np.int64), kg=np.array(cols["kg"], dtype=np.int8)))
    if not parts:
        return Batch.empty(), rejects
    if len(parts) == 1:
        P = parts[0]
    else:
        P = {k: ([x for p in parts for x in p[k]] if k == "m" else np.concatenate([p[k] for p in parts])) for k in parts[0]}
    ii = P["i"]
    order = None
    if len(ii) > 1 and np.any(ii[1:] < ii[:-1]):
        order = np.argsort(ii, kind="stable")
    src_a = np.zeros(n, dtype=np.int64) if src is None else np.asarray(src, dtype=np.int64)
    off_a = (np.arange(seq_start, seq_start + n, dtype=np.int64) if offsets is None
             else np.asarray(offsets, dtype=np.int64))
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
