"""Engine.snapshot_many gives exactly Engine.snapshot's bytes, and they restore."""

from __future__ import annotations

import numpy as np
import orjson

from stream.engine import Engine

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
