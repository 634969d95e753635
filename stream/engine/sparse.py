"""The compact encoding of subscriber snapshots (snapshot version 6): the dense field bytes (the
version-5 layout) XOR the bytes of a fresh subscriber's state (``base``: every field at its
initial value), cut into 8-byte words, stored as a bitmap of the words that are not zero and those
words only, in order. Pure numpy; encoding is vectorised over all the snapshots of a checkpoint.

Most of a subscriber's state is still at its initial value (ring days without traffic, empty
circle buckets, unused handset slots, "never" days): those words cost one bit each. The
checkpoint's changelog messages, RocksDB writes and producer work shrink with it.

Layout after the 2-byte header (version, ring_days): ``ceil(n_words / 8)`` bitmap bytes (bit ``j``
of byte ``j // 8``, least significant first, says word ``j`` is stored), then 8 bytes per stored
word. ``n_words = ceil(body_len / 8)``, the body (and ``base``) zero-padded to whole words.
"""

from __future__ import annotations

from operator import add

import numpy as np

__all__ = ["pack_words", "unpack", "unpack_many"]


def _sizes(body_len: int) -> tuple[int, int]:
    n_words = -(-body_len // 8)
    return n_words, -(-n_words // 8)


def _base_words(base: bytes, n_words: int) -> np.ndarray:
    return np.frombuffer(base + bytes(n_words * 8 - len(base)), dtype=np.uint64)


def pack_words(words: np.ndarray, head: np.ndarray, base: bytes) -> list[bytes]:
    """One encoded snapshot per row: ``head`` (k, h) uint8 (what precedes the bitmap: a caller's
    prefix and the version header), then the bitmap and the words that differ from ``base`` of the
    bodies side by side in ``words`` ((k, n_words) uint64, each row one body zero-padded to whole
    words, ``len(base)`` bytes before the padding; changed in place)."""
    k = head.shape[0]
    n_words, _ = _sizes(len(base))
    if words.shape != (k, n_words) or words.dtype != np.uint64:
        raise ValueError(f"words {words.shape} {words.dtype}, expected ({k}, {n_words}) uint64")
    words ^= _base_words(base, n_words)
    nz = words != 0
    front = np.concatenate([head, np.packbits(nz, axis=1, bitorder="little")], axis=1)
    fw = front.shape[1]
    fbuf = front.tobytes()
    wbuf = words[nz].tobytes()  # row by row, each row's words in order
    ends = np.cumsum(nz.sum(axis=1, dtype=np.int64)) * 8
    starts = np.r_[0, ends[:-1]]
    f_cuts = map(slice, range(0, k * fw, fw), range(fw, k * fw + fw, fw))
    w_cuts = map(slice, starts.tolist(), ends.tolist())
    return list(map(add, map(fbuf.__getitem__, f_cuts), map(wbuf.__getitem__, w_cuts)))


def unpack(data: bytes, offset: int, base: bytes) -> bytes:
    """The dense body encoded against ``base`` in ``data`` from ``offset`` on (the bitmap);
    raises ValueError when the bitmap and the words stored do not match."""
    words, fault = _decode([data], offset, base)
    if fault:
        raise ValueError(f"sparse snapshot: {fault}")
    return words.tobytes()[: len(base)]


def unpack_many(datas: list[bytes], offset: int, base: bytes) -> np.ndarray | None:
    """The dense bodies of many encoded snapshots (each from ``offset`` on), decoded together:
    ((k, n_words) uint64, each row one body zero-padded to whole words), or None when any of them
    is not a valid encoding (:func:`unpack` names what is wrong with it)."""
    words, fault = _decode(datas, offset, base)
    return None if fault else words


def _decode(datas: list[bytes], offset: int, base: bytes) -> tuple[np.ndarray, str | None]:
    """The bodies of ``datas`` ((k, n_words) uint64), or what is wrong with the first invalid one."""
    k = len(datas)
    n_words, n_bitmap = _sizes(len(base))
    lens = np.fromiter(map(len, datas), dtype=np.int64, count=k)
    empty = np.zeros((k, n_words), dtype=np.uint64)
    if (lens < offset + n_bitmap).any():
        return empty, "shorter than its bitmap"
    end = offset + n_bitmap
    heads = np.frombuffer(b"".join([d[offset:end] for d in datas]), dtype=np.uint8).reshape(k, n_bitmap)
    bits = np.unpackbits(heads, axis=1, bitorder="little")
    if bits[:, n_words:].any():
        return empty, "bitmap marks words beyond the body"
    nz = bits[:, :n_words].astype(bool)
    stored, marked = lens - end, 8 * nz.sum(axis=1, dtype=np.int64)
    bad = np.flatnonzero(stored != marked)
    if len(bad):
        return empty, f"{stored[bad[0]]} bytes of words, bitmap says {marked[bad[0]]}"
    words = empty
    words[nz] = np.frombuffer(b"".join([d[end:] for d in datas]), dtype=np.uint64)  # row by row, in order
    words ^= _base_words(base, n_words)
    if words.view(np.uint8).reshape(k, -1)[:, len(base) :].any():
        return words, "non-zero padding"
    return words, None
