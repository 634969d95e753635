"""Handset (IMEI) dual-SIM evidence: which numbers use which handset, and who switched to it.

A number that moves into a handset another of the operator's numbers used within
``dual_sim_days`` (a *switch*: a handset new to the number, which used another one before) is
dual-SIM evidence for those other numbers, on the switch's day; a use of a handset read after
another number's switch to it gets the same evidence (the order of two numbers' events depends on
partitions and topics, the evidence must not). :class:`HandsetIndex` holds that index, keyed by
IMEI hash, and is written once for its two users:

* **inside an engine** (``stream/engine/core.py``): the numbers of that engine, evidence applied at
  once, in arrival order. The backtest's single engine sees every number.
* **as a stage keyed by IMEI** (``stream/service/handsets.py``): a worker's engine only holds the
  numbers of its partitions, so it also sends what it observed (:data:`Op`, one per handset
  observation that changed the number's state) to an internal topic keyed by IMEI; the worker
  owning that IMEI's partition runs the same index over every worker's observations and sends the
  evidence back to the numbers' partitions. Evidence is idempotent and commutative (a number keeps
  the latest evidence day and the latest before it), so evidence found both ways, or replayed
  after a crash, changes nothing twice.

The index keeps ``IMEI_INDEX_SIZE`` numbers per IMEI (on overflow the oldest use goes, ties by
msisdn) and the same number of switches; a number's latest switch only (the previous one is
unswitched). The stage expires entries older than the ring (:meth:`HandsetIndex.expire`): a
decision reads evidence within ``dual_sim_days``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["HandsetIndex", "Op", "IMEI_INDEX_SIZE", "USE", "DROP", "UNSWITCH", "SWITCHED", "LATEST"]

IMEI_INDEX_SIZE = 4  # numbers (and switches) remembered per IMEI
NODAY = -(2**31)

# operations on the index (Op.kind)
USE = 0  # the number used the handset on day ``day`` (a new handset, or a later day)
DROP = 1  # the number no longer holds the handset (a newer one took its slot)
UNSWITCH = 2  # the number's latest switch is now to another handset
# USE flags
SWITCHED = 1  # a handset new to the number, which used another one before
LATEST = 2  # ... and it is the number's latest switch (indexed as such)


class Op(NamedTuple):
    """One observation for the index, routed by ``imei``."""

    kind: int
    imei: int
    msisdn: str
    day: int = NODAY
    flags: int = 0


class HandsetIndex:
    """IMEI -> {msisdn: last day of use} and IMEI -> {msisdn: day it switched to it}."""

    def __init__(self, dual_sim_days: int, size: int = IMEI_INDEX_SIZE) -> None:
        self.dual = int(dual_sim_days)
        self.size = size
        self.numbers: dict[int, dict[str, int]] = {}
        self.switches: dict[int, dict[str, int]] = {}

    def __len__(self) -> int:
        return len(self.numbers.keys() | self.switches.keys())

    # ------------------------------------------------------------------ operations
    def use(self, h: int, m: str, d: int, flags: int = 0, old_switch: int = 0) -> list[tuple[str, int]] | None:
        """Number ``m`` used handset ``h`` on day ``d``. Returns the evidence it gives as
        [(msisdn, evidence day)], or None when the index is full of later numbers (not indexed).
        ``old_switch``: the number's previous latest switch, unswitched here (an engine's own
        index; the stage gets an :data:`UNSWITCH` op for it instead, routed by that IMEI)."""
        ent = self.numbers.setdefault(h, {})
        if m in ent:
            ent[m] = max(ent[m], d)
        elif len(ent) < self.size:
            ent[m] = d
        else:
            mm = min(ent, key=lambda x: (ent[x], x))
            if (d, m) > (ent[mm], mm):
                del ent[mm]
                ent[m] = d
            else:
                return None
        dual = self.dual
        ev = []
        if flags & SWITCHED:
            # the handset now carries another of the numbers: evidence for those who used it within
            # dual_sim_days before (or since)
            ev = [(x, d) for x in ent if x != m and ent[x] >= d - dual + 1]
            if flags & LATEST:
                if old_switch and old_switch != h:
                    self.unswitch(old_switch, m)
                self.switch(m, h, d)
        # ... and the same evidence when a number's use of the handset arrives after the switch
        for x, dx in self.switches.get(h, {}).items():
            if x != m and d >= dx - dual + 1:
                ev.append((m, dx))
        return ev

    def drop(self, h: int, m: str) -> None:
        ent = self.numbers.get(h)
        if ent is not None:
            ent.pop(m, None)
            if not ent:
                del self.numbers[h]

    def unswitch(self, h: int, m: str) -> None:
        sw = self.switches.get(h)
        if sw is not None:
            sw.pop(m, None)
            if not sw:
                del self.switches[h]

    def switch(self, m: str, h: int, d: int) -> None:
        sw = self.switches.setdefault(h, {})
        if m in sw or len(sw) < self.size:
            sw[m] = max(sw.get(m, NODAY), d)
            return
        mm = min(sw, key=lambda x: (sw[x], x))
        if (d, m) > (sw[mm], mm):
            del sw[mm]
            sw[m] = d

    def apply(self, ops: Iterable[Op | tuple]) -> list[tuple[str, int]]:
        """The stage: every worker's observations, in the order they arrived. Returns the evidence."""
        out: list[tuple[str, int]] = []
        for kind, h, m, d, flags in ops:
            if kind == USE:
                ev = self.use(h, m, d, flags)
                if ev:
                    out.extend(ev)
            elif kind == DROP:
                self.drop(h, m)
            elif kind == UNSWITCH:
                self.unswitch(h, m)
            else:
                raise ValueError(f"unknown handset op {kind}")
        return out

    # ------------------------------------------------------------------ an engine's numbers
    def add_number(self, m: str, slots: Iterable[tuple[int, int]], switch_h: int, switch_d: int) -> None:
        """A number restored from its snapshot: its handsets and its latest switch."""
        for h, d in slots:
            ent = self.numbers.setdefault(h, {})
            if m in ent or len(ent) < self.size:
                ent[m] = max(ent.get(m, NODAY), d)
        if switch_h:
            self.switch(m, switch_h, switch_d)

    def remove_number(self, m: str, handsets: Iterable[int], switch_h: int) -> None:
        for h in handsets:
            self.drop(h, m)
        self.unswitch(switch_h, m)

    # ------------------------------------------------------------------ the stage's state
    def entry(self, h: int) -> dict | None:
        """One IMEI's entries (the stage's table value), None when it holds none."""
        n, s = self.numbers.get(h), self.switches.get(h)
        if not n and not s:
            return None
        return {"n": n or {}, "s": s or {}}

    def load(self, h: int, entry: dict) -> None:
        if entry.get("n"):
            self.numbers[h] = {m: int(d) for m, d in entry["n"].items()}
        if entry.get("s"):
            self.switches[h] = {m: int(d) for m, d in entry["s"].items()}

    def expire(self, before: int) -> list[int]:
        """Drop entries last used (or switched) before day ``before``; returns the IMEIs changed."""
        changed = []
        for index in (self.numbers, self.switches):
            for h in list(index):
                ent = index[h]
                old = [m for m, d in ent.items() if d < before]
                if old:
                    changed.append(h)
                    for m in old:
                        del ent[m]
                    if not ent:
                        del index[h]
        return sorted(set(changed))
