"""The store flush writes each row's newest state sent since the last flush (no broker needed)."""

import numpy as np
import pytest

from stream.service.churn import newest_items


def _items(rows, tag):
    return [(f"k{r}".encode(), r % 3, f"{tag}{r}".encode()) for r in rows]


def test_the_newest_item_of_each_row_wins_whatever_the_checkpoints():
    sent = [
        (np.array([5, 1, 9]), _items([5, 1, 9], "a")),
        (np.array([1, 7]), _items([1, 7], "b")),
        (np.array([9, 1]), _items([9, 1], "c")),
    ]
    got = {k: v for k, _, v in newest_items(sent)}
    assert got == {b"k5": b"a5", b"k1": b"c1", b"k9": b"c9", b"k7": b"b7"}
    assert len(newest_items(sent)) == 4  # one write per row


def test_random_checkpoints_equal_a_dict_replay():
    rng = np.random.default_rng(7)
    sent, want = [], {}
    for c in range(20):
        rows = rng.choice(50, size=int(rng.integers(0, 30)), replace=False)
        its = _items(rows.tolist(), f"c{c}-")
        sent.append((rows, its))
        want.update({k: v for k, _, v in its})
    got = newest_items(sent)
    assert {k: v for k, _, v in got} == want
    assert len(got) == len(want)


def test_one_checkpoint_is_passed_through_and_a_mismatch_is_refused():
    its = _items([3, 4], "x")
    assert newest_items([(np.array([3, 4]), its)]) is its
    assert newest_items([]) == []
    with pytest.raises(ValueError):
        newest_items([(np.array([1, 2]), _items([1], "x")), (np.array([3]), _items([3], "y"))])
