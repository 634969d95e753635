"""The typed fast path of :func:`stream.engine.decode.decode`: msgspec Structs validated in C.

Calls, SMS and recharges are decoded by one ``msgspec`` decoder per chunk of lines into
``Struct`` objects (a tagged union on ``type``): field presence, JSON types, the ``direction``
literal and the numeric bounds are checked inside the parser, with no dict and no Python frame
per field. What msgspec cannot say exactly as the contract does (ASCII digit strings and their
lengths, the key, a recharge worth 0 cents) is checked column by column afterwards with C-level
maps. Every line that fails anywhere, every profile (rare) and every line of a chunk that is not
plain UTF-8 goes to the exact validator (``decode_exact``, the per-field rules of
:mod:`stream.engine.exact`), which names its reject reason or, where msgspec was stricter than
the contract (it never is on the contract's fields), accepts it. So the output equals
``decode_exact``'s: the same rows, columns and rejects (``tests/engine/test_decode.py`` fuzzes it
and the reference engine, which decodes with ``decode_exact``, is proven equal to the fast one).

One difference is by design: msgspec skips the fields the contract does not name without
converting them, so a number beyond the double range (``1e400``) in such a field does not make the
line ``invalid_json`` as orjson's parse does; the event's own fields are all valid, and it counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter, is_not
from typing import Annotated, Literal

import msgspec
import numpy as np

from stream.contract import KIND_CALL, KIND_RECHARGE, KIND_SMS

from .exact import (
    _CHUNK,
    Batch,
    Reject,
    _assemble,
    _cand_digits,
    _check_keys,
    _contact_part,
    _ctx_for,
    _digits_within,
    _drop,
    _part,
    _take,
    decode_parts,
)
from .rowindex import digit_values

__all__ = ["decode_typed"]

_Ts = Annotated[float, msgspec.Meta(gt=0, lt=1e11)]
_Dir = Literal["out", "in"]


class _Call(msgspec.Struct, tag_field="type", tag="call", gc=False):
    msisdn: str
    ts: _Ts
    direction: _Dir
    peer: str
    duration_s: Annotated[int, msgspec.Meta(ge=0, le=86400)]
    imei: str | None = None
    peer_operator: str | None = None


class _Sms(msgspec.Struct, tag_field="type", tag="sms", gc=False):
    msisdn: str
    ts: _Ts
    direction: _Dir
    peer: str
    peer_operator: str | None = None


class _Recharge(msgspec.Struct, tag_field="type", tag="recharge", gc=False):
    msisdn: str
    ts: _Ts
    amount: Annotated[float, msgspec.Meta(gt=0, lt=1e9)]


class _Profile(msgspec.Struct, tag_field="type", tag="profile", gc=False):
    """Any object tagged ``profile``: profiles are rare and validated by the exact rules."""


_Event = _Call | _Sms | _Recharge | _Profile
_DEC_MANY = msgspec.json.Decoder(list[_Event])
_DEC_ONE = msgspec.json.Decoder(_Event)
_CODE = {_Call: 0, _Sms: 1, _Recharge: 2}  # anything else (a profile, a failed line: None) is slow
_G = {f: attrgetter(f) for f in ("msisdn", "ts", "direction", "peer", "duration_s", "imei", "peer_operator", "amount")}
_DecodeError = msgspec.DecodeError  # ValidationError is a DecodeError


def _utf8(b: bytes) -> bool:
    """Plain ASCII (the common case, checked at memory speed) or valid UTF-8. msgspec does not check
    the encoding of the strings it skips; orjson rejects the whole line, and so does the contract."""
    if b.isascii():
        return True
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _one(r: bytes):
    if not _utf8(r):
        return None
    try:
        return _DEC_ONE.decode(r)
    except _DecodeError:
        return None


def _parse(raws: Sequence[bytes]) -> list:
    """One typed parse per chunk of ``_CHUNK`` lines; a chunk that fails is halved until its parts
    parse (a part of at most ``_ONE_BY_ONE`` lines is parsed line by line), a line that fails is
    ``None``."""
    objs: list = []
    for s in range(0, len(raws), _CHUNK):
        _parse_part(raws[s : s + _CHUNK], objs)
    return objs


_ONE_BY_ONE = 8


def _parse_part(part: Sequence[bytes], objs: list) -> None:
    """Append the Structs of ``part`` (None for a line that fails) to ``objs``. Halving finds a
    malformed line of a 128-line chunk in ~14 parses of shrinking parts instead of 128 single ones
    (a dirty feed has one in a thousand: one chunk in eight)."""
    joined = b"[" + b",".join(part) + b"]"
    if _utf8(joined):
        try:
            got = _DEC_MANY.decode(joined)
        except _DecodeError:
            pass
        else:
            if len(got) == len(part):
                objs += got
                return
    if len(part) <= _ONE_BY_ONE:
        objs += map(_one, part)
        return
    mid = len(part) // 2
    _parse_part(part[:mid], objs)
    _parse_part(part[mid:], objs)


def _digit_fails(col: list, lo: int, hi: int) -> list:
    """Positions of a column of str that are not ``lo..hi`` ASCII digits."""
    if not col or _digits_within(col, lo, hi):
        return []
    return _cand_digits(col, lo, hi)


def _imei_fails(col: list) -> list:
    """Positions of an imei column (str or None) that are not 14-16 ASCII digits or None."""
    present = list(filter(None, col))  # drops None and "" ("" is then counted missing below)
    if (not present or _digits_within(present, 14, 16)) and len(present) + col.count(None) == len(col):
        return []
    return _cand_digits(col, 14, 16, none_ok=True)


class _Group:
    """The Structs of one event type: their raw positions and columns; ``drop`` removes rows."""

    def __init__(self, objs: list, pos: list, fields: tuple[str, ...]) -> None:
        self.pos = pos
        rows = _take(objs, pos)
        self.cols = {f: list(map(_G[f], rows)) for f in fields}

    def drop(self, bad: list) -> None:
        """Remove the rows at positions ``bad`` (ascending) from the positions and every column
        (in place when they are few: one memmove each instead of a copy of every column)."""
        if not bad:
            return
        desc = bad[::-1]
        self.pos = _drop(self.pos, desc)
        for c in self.cols.values():
            _drop(c, desc)


def _imei_values(col: list) -> np.ndarray | None:
    """The imei column as uint64 (0 where the optional field is absent), or None when a value
    present is not 14-16 ASCII digits (the exact scan then finds which)."""
    n = len(col)
    if None not in col:
        got = digit_values(col, 14, 16)
        return None if got is None else got[1]
    there = np.flatnonzero(np.fromiter(map(is_not, col, repeat(None)), bool, n))
    im = np.zeros(n, dtype=np.uint64)
    if len(there):
        got = digit_values(_take(col, there.tolist()), 14, 16)
        if got is None:
            return None
        im[there] = got[1]
    return im


def _common_fails(g: _Group, keys) -> set:
    bad = set(_digit_fails(g.cols["msisdn"], 5, 20))
    if keys is not None:
        gbad: dict = {}
        _check_keys(_take(keys, g.pos), g.cols["msisdn"], gbad)
        bad.update(gbad)
    return bad


def decode_typed(raws: Sequence[bytes], keys, src, offsets, config, seq_start: int) -> tuple[Batch, list[Reject]]:
    """:func:`stream.engine.decode.decode`'s work (the cyclic GC already paused by it)."""
    n = len(raws)
    if n == 0:
        return Batch.empty(), []
    ctx = _ctx_for(config)
    objs = _parse(raws)
    codes = np.fromiter(map(_CODE.get, map(type, objs), [3] * n), np.int8, n)
    slow: list[int] = np.flatnonzero(codes == 3).tolist()
    parts: list[dict] = []
    for code, kind in ((0, KIND_CALL), (1, KIND_SMS)):
        pos = np.flatnonzero(codes == code).tolist()
        if not pos:
            continue
        is_call = kind == KIND_CALL
        fields = ("msisdn", "ts", "direction", "peer", "peer_operator")
        g = _Group(objs, pos, fields + (("duration_s", "imei") if is_call else ()))
        bad = _common_fails(g, keys)
        peers = digit_values(g.cols["peer"], 1, 19)
        if peers is None:
            bad.update(_cand_digits(g.cols["peer"], 1, 19))
        imei_v = None  # the values (0: no imei) when every imei present is valid
        if is_call:
            imei_v = _imei_values(g.cols["imei"])
            if imei_v is None:
                bad.update(_imei_fails(g.cols["imei"]))
        if bad:
            bad_l = sorted(bad)
            slow += _take(g.pos, bad_l)
            g.drop(bad_l)
            if peers is not None:
                peers = (np.delete(peers[0], bad_l), np.delete(peers[1], bad_l))
            if imei_v is not None:
                imei_v = np.delete(imei_v, bad_l)
        if not g.pos:
            continue
        C = g.cols
        pops = C["peer_operator"]
        parts.append(
            _contact_part(
                g.pos,
                kind,
                C["msisdn"],
                np.array(C["ts"], dtype=np.float64),
                C["direction"],
                C["peer"],
                None if pops.count(None) == len(pops) else pops,
                C.get("duration_s"),
                C.get("imei"),
                ctx,
                peers,
                imei_v,
            )
        )
    pos = np.flatnonzero(codes == 2).tolist()
    if pos:
        g = _Group(objs, pos, ("msisdn", "ts", "amount"))
        cents = np.rint(np.array(g.cols["amount"], dtype=np.float64) * 100.0)
        bad = _common_fails(g, keys)
        bad.update(np.flatnonzero(cents <= 0).tolist())
        if bad:
            bad_l = sorted(bad)
            slow += _take(g.pos, bad_l)
            g.drop(bad_l)
            cents = np.delete(cents, bad_l)
        if g.pos:
            ts = np.array(g.cols["ts"], dtype=np.float64)
            parts.append(_part(g.pos, KIND_RECHARGE, g.cols["msisdn"], ts, cents=cents.astype(np.int64)))
    rejects: list[Reject] = []
    if slow:
        slow.sort()
        parts_slow, rejects = _exact(raws, keys, slow, config)
        parts += parts_slow
    if not parts:
        return Batch.empty(), rejects
    return _assemble(parts, n, src, offsets, seq_start, config), rejects


def _exact(raws, keys, slow: list, config) -> tuple[list[dict], list[Reject]]:
    """The exact rules over the ``slow`` lines: their kept rows as parts and their rejects, both
    indexed like ``raws``."""
    parts, rejects = decode_parts(_take(raws, slow), None if keys is None else _take(keys, slow), config)
    slow_a = np.array(slow, dtype=np.int64)
    for p in parts:
        p["i"] = slow_a[p["i"]]
    return parts, [Reject(slow[r.index], r.reason, r.detail) for r in rejects]
