"""Handset (IMEI) dual-SIM evidence across workers: the switches broadcast, the decisions held
until every worker's switches before them are in.

A worker's engine holds only the numbers of its partitions. Two numbers that share a handset
(stream/engine/handsets.py) may live on two workers: the uses are many (every active day of every
number with a handset), the switches few (a handset changing hands), so the switches travel and
the uses stay. Each worker sends every switch its engine indexed (``StepResult.handset_ops``) to
**every** partition of the evidence topic (``<app id>.shadow.evidence``, read with the inputs),
so every worker reads each switch at least once; its engine meets it with its own numbers
(``Engine.apply_switches``: evidence for those that used the handset within the window, the switch
kept for their later uses). Idempotent: a switch read once per owned partition, or again after a
crash, counts once.

**Event time across workers.** The backtest's one engine finds the evidence at once; a worker
must not decide a day before the switches of the other workers' events up to it are in. So each
worker sends, behind its switches, its complete time (a *heartbeat*: per input partition it owns,
that time, or a time far ahead for a partition caught up, which holds nobody back) to every
evidence partition, when it moves a day of decisions on, a quarter of its window (churn.py)
further, when a partition catches up or falls behind, and every ``HEARTBEAT_S`` anyway (a
restarted worker learns the others' times); each worker decides up to the least of every input
partition's latest reported time and its own (Flink's watermark over a broadcast exchange, idle
inputs excluded). One hop, no stage state.

Switches are kept in the subscriber-state table (its changelog), under ``SWITCH_PREFIX +
imei:msisdn``, in every partition they were read from: every evidence partition carries every
switch, so every table partition holds them, and whoever owns any partitions after a restart or a
rebalance has them all.

Wire formats on the evidence topic (internal, JSON envelopes, one per partition per batch):
``{"s": [[imei, msisdn, day, flags, old imei], ...]}`` and ``{"w": [[input partition, event
time], ...]}``, beside the second-SIM join's ``{"e": [...]}``.
"""

from __future__ import annotations

import math

import orjson

from ..engine.handsets import LATEST, SWITCHED, Switch

__all__ = [
    "HEARTBEAT_S",
    "SWITCH_PREFIX",
    "switch_messages",
    "heartbeat_messages",
    "parse_switches",
    "parse_times",
    "switch_key",
    "parse_switch_key",
]

HEARTBEAT_S = 5.0  # a worker's complete time to every evidence partition at least this often
SWITCH_PREFIX = b"\x01sw:"  # table keys of remote switches (msisdn keys are digits)


def _broadcast(env: dict, partitions: int) -> list[tuple[int, bytes]]:
    value = orjson.dumps(env)
    return [(p, value) for p in range(partitions)]


def switch_messages(switches: list, partitions: int) -> list[tuple[int, bytes]]:
    """The engine's switches, to every partition (one envelope each)."""
    if not switches:
        return []
    return _broadcast({"s": [list(sw) for sw in switches]}, partitions)


def heartbeat_messages(
    times: dict[int, float], partitions: int, newest: float | None = None
) -> list[tuple[int, bytes]]:
    """This worker's input partitions are complete up to these event times (and their switches
    before them sent), and ``newest``, the newest event time it applied (``"n"``): to every
    partition."""
    env: dict = {"w": [[p, t] for p, t in sorted(times.items())]}
    if newest is not None:
        env["n"] = newest
    return _broadcast(env, partitions)


def parse_newest(v) -> float:
    """An envelope's ``"n"``: an event time; raises ValueError if malformed."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"bad newest time {v!r}")
    return float(v)


def parse_switches(entries) -> list[Switch]:
    """An envelope's ``"s"`` list, validated; raises ValueError (or TypeError) if malformed."""
    if not isinstance(entries, list):
        raise ValueError("switches are not a list")
    out = []
    for h, m, d, flags, old in entries:
        if not (
            isinstance(m, str)
            and isinstance(h, int)
            and 0 < h < 2**64
            and isinstance(d, int)
            and isinstance(old, int)
            and 0 <= old < 2**64
            and flags in (SWITCHED, SWITCHED | LATEST)
        ):
            raise ValueError(f"bad switch {[h, m, d, flags, old]!r}")
        out.append(Switch(h, m, d, flags, old))
    return out


def parse_times(entries, partitions: int) -> list[tuple[int, float]]:
    """An envelope's ``"w"`` list: [[input partition, event time], ...], validated; raises
    ValueError (or TypeError) if malformed."""
    if not isinstance(entries, list):
        raise ValueError("times are not a list")
    out = []
    for p, t in entries:
        if not (isinstance(p, int) and 0 <= p < partitions and isinstance(t, int | float) and math.isfinite(t)):
            raise ValueError(f"bad time {[p, t]!r}")
        out.append((p, float(t)))
    return out


def switch_key(h: int, m: str) -> bytes:
    return SWITCH_PREFIX + f"{h}:{m}".encode()


def parse_switch_key(key: bytes) -> tuple[int, str]:
    h, _, m = key[len(SWITCH_PREFIX) :].decode("ascii").partition(":")
    return int(h), m
