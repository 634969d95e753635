"""Engine.snapshot_many gives exactly Engine.snapshot's bytes, they restore, and their sparse
encoding (version 6) holds exactly the dense field bytes."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream.engine import Engine, core
from stream.engine.core import SNAPSHOT_VERSION, fields_of, initial_body
from stream.engine.sparse import unpack

from .gen import DAY, T0, call, recharge, sms
from .helpers import CLOCK, quiet_config


def test_snapshot_many_equals_snapshot_and_restores():
    eng = Engine(quiet_config(), clock=lambda: CLOCK)
    subs = [f"86138000{i:05d}" for i in range(40)]
    ev = []
    for j, m in enumerate(subs):
        ev += [call(m, T0 + d * DAY + j, f"86139000{d:05d}", dur=30 + d) for d in range(0, 30, 3)]
        ev += [sms(m, T0 + 5 * DAY + j, "8613900000077"), recharge(m, T0 + 2 * DAY, 30.0)]
    b, _ = eng.decode([orjson.dumps(e) for e in ev])
    eng.apply(b)
    rows = np.array([eng.row_of(m) for m in subs[::-1]], dtype=np.int64)  # any order
    many = eng.snapshot_many(rows)
    assert many == [eng.snapshot(m) for m in subs[::-1]]
    other = Engine(quiet_config(), clock=lambda: CLOCK)
    for m, snap in zip(subs[::-1], many, strict=False):
        other.restore(m, snap)
        assert other.state_of(m) == eng.state_of(m)
    assert eng.snapshot_many(np.zeros(0, dtype=np.int64)) == []
    # a caller's per-row header, in the same matrix: header bytes, then the same snapshot
    prefix = np.arange(2 * len(rows), dtype=np.uint8).reshape(-1, 2)
    with_prefix = eng.snapshot_many(rows, prefix=prefix)
    assert with_prefix == [bytes(prefix[i]) + many[i] for i in range(len(rows))]


def test_snapshot_many_in_blocks_equals_in_one(monkeypatch):
    """More rows than a block (``_SNAP_BLOCK``): the same bytes, prefixes included, in order."""
    eng = Engine(quiet_config(), clock=lambda: CLOCK)
    subs = [f"86138000{i:05d}" for i in range(23)]
    ev = [call(m, T0 + j * 60, f"86139000{j:05d}", dur=j) for j, m in enumerate(subs)]
    b, _ = eng.decode([orjson.dumps(e) for e in ev])
    eng.apply(b)
    rows = np.array([eng.row_of(m) for m in subs[::-1]], dtype=np.int64)
    prefix = np.arange(2 * len(rows), dtype=np.uint8).reshape(-1, 2)
    whole = eng.snapshot_many(rows, prefix=prefix)
    monkeypatch.setattr(core, "_SNAP_BLOCK", 5)
    assert eng.snapshot_many(rows, prefix=prefix) == whole
    assert eng.snapshot_many(rows) == [w[2:] for w in whole]


def _dense(eng: Engine, m: str, version: int = SNAPSHOT_VERSION) -> bytes:
    """The subscriber's field bytes, field by field (the dense body of ``version``'s fields)."""
    r = eng.row_of(m)
    return b"".join(np.ascontiguousarray(eng._a[name][r]).tobytes() for name, _, _, _ in fields_of(version))  # noqa: SLF001


def _population():
    eng = Engine(quiet_config(), clock=lambda: CLOCK)
    subs = [f"86138000{i:05d}" for i in range(30)]
    ev = []
    for j, m in enumerate(subs):
        ev += [
            call(m, T0 + d * DAY + j, f"86139{j:03d}{d:05d}", dur=30 + d, imei="356000000000001") for d in range(j + 1)
        ]
        ev += [recharge(m, T0 + 2 * DAY, 30.0)] if j % 3 else []
    b, _ = eng.decode([orjson.dumps(e) for e in ev])
    eng.apply(b)
    return eng, subs


def test_the_sparse_snapshot_holds_exactly_the_dense_fields_and_is_smaller():
    eng, subs = _population()
    for m in subs:
        snap = eng.snapshot(m)
        dense = _dense(eng, m)
        assert snap[:2] == bytes([SNAPSHOT_VERSION, eng.R]) and SNAPSHOT_VERSION == 7
        assert unpack(snap, 2, initial_body(eng.R)) == dense
        assert len(snap) < len(dense)
    # one day of traffic: nearly all of the state is still at its initial value
    assert len(eng.snapshot(subs[0])) < len(_dense(eng, subs[0])) / 8
    # the dense version-5 form of the same state still restores (a changelog written before)
    other = Engine(quiet_config(), clock=lambda: CLOCK)
    for m in subs:
        other.restore(m, bytes([5, eng.R]) + _dense(eng, m, 5))
        assert other.state_of(m) == eng.state_of(m) and other.snapshot(m) == eng.snapshot(m)


def test_snapshots_of_many_rows_hold_each_rows_dense_fields():
    """snapshot_many assembles all its records at once (one gather per field into a structured
    array): every row of a large batch, in any order, holds its own dense fields."""
    eng = Engine(quiet_config(), clock=lambda: CLOCK)
    n = 1061
    subs = [f"8613800{i:06d}" for i in range(n)]
    ev = []
    for j, m in enumerate(subs):
        ev += [call(m, T0 + (j % 9) * DAY + j, f"86139{j:08d}", dur=j % 500, imei=f"35600000{j:07d}")]
        ev += [recharge(m, T0 + (j % 5) * DAY, 10.0 + j % 7)] if j % 4 else [sms(m, T0 + DAY, "8613900000077")]
    b, _ = eng.decode([orjson.dumps(e) for e in ev])
    eng.apply(b)
    order = np.random.default_rng(3).permutation(n)
    many = eng.snapshot_many(np.array([eng.row_of(subs[i]) for i in order], dtype=np.int64))
    assert len(many) == n
    for i, snap in zip(order.tolist(), many, strict=True):
        assert unpack(snap, 2, initial_body(eng.R)) == _dense(eng, subs[i])


def test_a_damaged_sparse_snapshot_is_refused():
    eng, subs = _population()
    snap = eng.snapshot(subs[-1])
    n = len(_dense(eng, subs[-1]))
    bitmap_len = ((n + 7) // 8 + 7) // 8
    other = Engine(quiet_config(), clock=lambda: CLOCK)
    for bad in (
        snap[:-8],  # a word missing
        snap + bytes(8),  # a word too many
        snap[:2] + bytes([snap[2] ^ 1]) + snap[3:],  # the bitmap no longer matches the words
        snap[: 2 + bitmap_len - 1] + bytes([0x80]) + snap[2 + bitmap_len :],  # a bit beyond the body
        snap[:3],  # shorter than its bitmap
    ):
        with pytest.raises(ValueError):
            other.restore(subs[-1], bad)


def test_restore_many_equals_restore_one_by_one(monkeypatch):
    """The batch restore (a recovering worker's): the same state and snapshots as restore, in
    blocks, beside snapshots of another form (dense version 5) and over subscribers it already
    holds; a set holding a damaged snapshot goes one by one, which refuses it."""
    monkeypatch.setattr(core, "_RESTORE_BLOCK", 7)
    eng, subs = _population()
    items = [(m, eng.snapshot(m)) for m in subs]
    items[4] = (subs[4], bytes([5, eng.R]) + _dense(eng, subs[4], 5))  # an older worker's form
    one, many = Engine(quiet_config(), clock=lambda: CLOCK), Engine(quiet_config(), clock=lambda: CLOCK)
    for m, data in items:
        one.restore(m, data)
    # many already holds some of them, with other state (a recovery over a live engine)
    b, _ = many.decode([orjson.dumps(call(m, T0 + 3 * DAY, "8613900000055", imei="356000000000009")) for m in subs[:9]])
    many.apply(b)
    many.restore_many(items)
    for m in subs:
        assert many.state_of(m) == one.state_of(m) == eng.state_of(m)
        assert many.snapshot(m) == eng.snapshot(m)
    # the handset index too (the handset many's own calls used before is gone from it)
    hs_many, hs_one = many._handsets, one._handsets  # noqa: SLF001
    assert hs_many.numbers == hs_one.numbers and hs_many.switches == hs_one.switches
    damaged = [*items[:10], (subs[10], items[10][1][:-8])]
    with pytest.raises(ValueError):
        Engine(quiet_config(), clock=lambda: CLOCK).restore_many(damaged)
