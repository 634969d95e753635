"""The engine's vectorised msisdn -> row index (stream/engine/rowindex.py) answers as the dict it mirrors."""

from __future__ import annotations

import random

import numpy as np

from stream.engine.rowindex import RowIndex, keys_of


def test_keys_tell_apart_what_a_dict_tells_apart():
    ms = ["8613800000001", "08613800000001", "0012345", "12345", "123456789012345", "1", "0"]
    keys = keys_of(ms)
    assert len(set(keys.tolist())) == len(ms)
    assert (keys != 0).all()
    # equal lengths take the vectorised path; it gives the per-number keys
    same = ["8613800000001", "8613899999999", "0000000000000"]
    assert (
        keys_of(same).tolist() == keys_of(same[:1]).tolist() + keys_of(same[1:2]).tolist() + keys_of(same[2:]).tolist()
    )
    # what the table does not hold: longer than E.164's 15 digits, or not digits
    assert keys_of(["1234567890123456", "99999999999999999999", "12a45", "", "１２３４５"]).tolist() == [0] * 5


def test_lookups_answer_as_the_dict_through_adds_removals_and_rebuilds():
    rng = random.Random(3)
    pool = [str(rng.randrange(10**12, 10**13)) for _ in range(6000)]
    pool += [str(rng.randrange(10**4, 10**15)) for _ in range(1000)]  # mixed lengths
    pool += ["0012345", "12345", "99999999999999999999", "1234567890123456789", "abc", "", "１２３４５"]
    index, want = RowIndex(), {}
    for step in range(40_000):
        m = rng.choice(pool)
        if rng.random() < 0.65:
            row = rng.randrange(10**6)
            index.add(m, row)
            want[m] = row
        else:
            index.remove(m)
            want.pop(m, None)
        if step % 2000 == 0:
            q = [rng.choice(pool) for _ in range(1500)]
            q13 = [x for x in q if len(x) == 13]  # a batch of one numbering plan (the vectorised keys)
            for batch in (q, q13):
                got = index.lookup(batch)
                assert got.dtype == np.int64
                assert got.tolist() == [want.get(x, -1) for x in batch]
            assert len(index) == len(want)
    assert index.lookup([]).tolist() == []
