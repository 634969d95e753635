"""Raw bytes → columnar :class:`Batch` + rejects: the decoder of both engines, the service and the
backtest. Pure, no I/O.

:func:`decode` runs the typed fast path (:mod:`stream.engine.typed`: msgspec Structs validated in
C) and hands the lines it cannot vouch for to :func:`decode_exact` (:mod:`stream.engine.exact`: the
contract's rules field by field over orjson dicts), whose result it equals: the same rows, columns,
rejects and reasons (``tests/engine/test_decode.py`` fuzzes both; the reference engine decodes with
``decode_exact`` alone and is proven equal to the fast engine).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import EngineConfig
from .exact import PLAN_CODES, REJECT_REASONS, Batch, Reject, decode_exact, gc_paused, mix64
from .typed import decode_typed

__all__ = ["Batch", "Reject", "REJECT_REASONS", "decode", "decode_exact", "PLAN_CODES", "mix64"]


def decode(
    raws: Sequence[bytes],
    keys: Sequence[bytes | None] | None = None,
    src: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
    *,
    config: EngineConfig,
    seq_start: int = 0,
) -> tuple[Batch, list[Reject]]:
    """Decode and validate: a :class:`Batch` of the valid events (``idx`` their positions in
    ``raws``) and one :class:`Reject` per invalid line, with a reason from ``REJECT_REASONS``.
    ``offsets`` default to ``seq_start + index`` (a running sequence); ``keys`` are the Kafka keys
    (``key_mismatch`` when one is not the event's msisdn). The cyclic GC is paused meanwhile."""
    return gc_paused(decode_typed, raws, keys, src, offsets, config, seq_start)
