"""msisdn -> engine row for a whole batch at once: an open-addressing hash table in numpy.

The engine's ``dict`` of msisdns stays the authority; this index mirrors it for the one lookup
per event that every batch makes (``Engine.apply``). A ``dict.get`` per event costs a cache miss
or two per msisdn: the key objects of a large engine lie scattered in memory, and a freshly
decoded msisdn has no cached hash yet. Measured in the hot path on 100,000 subscribers (2026-12-08,
batches of 10,000 freshly decoded events): ~0.6-0.9 µs per event, a fifth of the batch step.
Here the msisdns of a batch become integer keys in a few numpy passes over their joined digits,
and the table is probed for all of them together.

Key: ``(length << 56) | int(digits)`` for 1-15 ASCII digits (E.164's longest number; leading
zeros stay distinct by the length); any other msisdn (16-20 digits, or not digits: the contract
allows 5-20) is kept in a small ``dict`` beside the table. Linear probing, capacity a power of two, at most half full
(tombstones included); removal leaves a tombstone, and a rebuild drops them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["RowIndex", "keys_of", "digit_values", "KEY_VALUE_MASK"]

_EMPTY = 0
_TOMB = 1  # (no real key is below 1 << 56)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_GOLD_INT, _MASK64 = 0x9E3779B97F4A7C15, (1 << 64) - 1  # (the same, for one key)
_POW10 = np.array([10**k for k in range(20)], dtype=np.uint64)
_MAXLEN = 15  # E.164's longest number; (15 digits < 2**50)
KEY_VALUE_MASK = np.uint64((1 << 56) - 1)  # a key's number, without its length


def _key1(m: str) -> int:
    if 1 <= len(m) <= _MAXLEN and m.isascii() and m.isdigit():
        return (len(m) << 56) | int(m)
    return 0


def digit_values(col, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(lengths, uint64 values) of a non-empty column of str whose every value is ``lo..hi`` ASCII
    digits (``hi`` <= 19: the values fit 64 bits), from numpy passes over the joined digits; None
    otherwise (the caller then looks value by value). Replaces a check, an ``int`` and a ``len``
    per value: the decoder's peer and imei columns, and the row index's keys."""
    s = "".join(col)
    if not s.isascii():
        return None
    n = len(col)
    lens = np.fromiter(map(len, col), np.int64, n)
    if lens.min() < lo or lens.max() > hi:
        return None
    dig = np.frombuffer(s.encode("ascii"), dtype=np.uint8) - np.uint8(48)
    if not (dig < 10).all():
        return None
    w = int(lens[0])
    if (lens == w).all():  # one length (a numbering plan): a row of digits each
        return lens, dig.reshape(n, w).astype(np.uint64) @ _POW10[w - 1 :: -1]
    ends = np.cumsum(lens)
    exp = np.repeat(ends, lens) - np.arange(len(dig)) - 1  # each digit's power of ten in its number
    return lens, np.add.reduceat(dig.astype(np.uint64) * _POW10[exp], ends - lens)


def keys_of(msisdns: Sequence[str]) -> np.ndarray:
    """The uint64 key of each msisdn (0: not 1-15 ASCII digits, kept outside the table)."""
    if len(msisdns) == 0:
        return np.zeros(0, dtype=np.uint64)
    got = digit_values(msisdns, 1, _MAXLEN)
    if got is not None:  # every one 1-15 ASCII digits (the common case): numpy passes
        lens, v = got
        return v | (lens.astype(np.uint64) << np.uint64(56))
    return np.array(list(map(_key1, msisdns)), dtype=np.uint64)


class RowIndex:
    """msisdn -> row (int64, -1 absent). ``lookup`` is vectorised; ``add``/``remove`` one at a time."""

    def __init__(self, capacity: int = 1024) -> None:
        self._other: dict[str, int] = {}
        self._alloc(max(1024, 1 << (int(capacity) - 1).bit_length()))

    def _alloc(self, cap: int) -> None:
        self._cap = cap
        self._mask = cap - 1
        self._shift = np.uint64(64 - (cap.bit_length() - 1))
        self._k = np.zeros(cap, dtype=np.uint64)
        self._v = np.full(cap, -1, dtype=np.int64)
        self._used = 0  # live keys and tombstones
        self._live = 0

    def __len__(self) -> int:
        return self._live + len(self._other)

    def _home(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return ((keys * _GOLD) >> self._shift).astype(np.int64)

    def lookup(self, msisdns: Sequence[str]) -> np.ndarray:
        n = len(msisdns)
        keys = keys_of(msisdns)
        out = np.full(n, -1, dtype=np.int64)
        idx = np.flatnonzero(keys != 0)
        if len(idx) < n and self._other:
            get = self._other.get
            for j in np.flatnonzero(keys == 0).tolist():
                out[j] = get(msisdns[j], -1)
        k = keys[idx]
        h = self._home(k)
        tk, tv, mask = self._k, self._v, self._mask
        while len(idx):
            kk = tk[h]
            hit = kk == k
            if hit.any():
                out[idx[hit]] = tv[h[hit]]
            go = ~hit & (kk != _EMPTY)
            if not go.any():
                break
            idx, k, h = idx[go], k[go], (h[go] + 1) & mask
        return out

    def _find(self, key: int) -> tuple[int, int]:
        """(slot holding ``key`` or -1, first free slot on its probe path: a tombstone or empty)."""
        h = ((key * _GOLD_INT) & _MASK64) >> int(self._shift)
        free = -1
        tk = self._k
        while True:
            kk = int(tk[h])
            if kk == key:
                return h, free
            if kk == _EMPTY:
                return -1, h if free < 0 else free
            if kk == _TOMB and free < 0:
                free = h
            h = (h + 1) & self._mask

    def add(self, msisdn: str, row: int) -> None:
        key = _key1(msisdn)
        if key == 0:
            self._other[msisdn] = row
            return
        at, free = self._find(key)
        if at >= 0:
            self._v[at] = row
            return
        if int(self._k[free]) == _EMPTY:
            self._used += 1
        self._k[free] = key
        self._v[free] = row
        self._live += 1
        if 2 * self._used > self._cap:
            self._rebuild()

    def remove(self, msisdn: str) -> None:
        key = _key1(msisdn)
        if key == 0:
            self._other.pop(msisdn, None)
            return
        at, _ = self._find(key)
        if at >= 0:
            self._k[at] = _TOMB
            self._v[at] = -1
            self._live -= 1

    def _rebuild(self) -> None:
        """Into a table at most a quarter full, without tombstones (all keys placed together)."""
        live = self._k > _TOMB
        keys, vals = self._k[live], self._v[live]
        cap = self._cap
        while 4 * len(keys) > cap:
            cap *= 2
        self._alloc(cap)
        h = self._home(keys)
        pend = np.arange(len(keys))
        while len(pend):
            # each free home slot takes the first pending key aimed at it; the rest probe on
            slots = h[pend]
            free = self._k[slots] == _EMPTY
            _, first = np.unique(slots, return_index=True)
            take = np.zeros(len(pend), dtype=bool)
            take[first] = True
            take &= free
            placed = pend[take]
            self._k[h[placed]] = keys[placed]
            self._v[h[placed]] = vals[placed]
            pend = pend[~take]
            h[pend] = (h[pend] + 1) & self._mask
        self._used = self._live = len(keys)
