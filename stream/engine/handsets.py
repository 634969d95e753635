"""Handset (IMEI) dual-SIM evidence: which numbers use which handset, and who switched to it.

A number that moves into a handset another of the operator's numbers used within
``dual_sim_days`` (a *switch*: a handset new to the number, which used another one before) is
dual-SIM evidence for those other numbers, on the switch's day; a use of a handset read after
another number's switch to it gets the same evidence (the order of two numbers' events depends on
partitions and topics, the evidence must not). :class:`HandsetIndex` holds that index, keyed by
IMEI hash, inside each engine (``stream/engine/core.py``), over the engine's own numbers.

The backtest's single engine sees every number. A worker's engine holds only the numbers of its
partitions, so the switches (rare: a handset changes hands a few times in a subscriber's life,
against a use on every active day) are broadcast: the engine records each switch it indexes as a
:class:`Switch`, the service sends it to every worker (stream/service/handsets.py), and each
engine meets it with its own numbers (:meth:`HandsetIndex.remote_switch`): evidence for those that
used the handset within the window, and the switch kept so that a later use finds it. Evidence
is idempotent and commutative (a number keeps the latest evidence day and the latest before it),
so a switch met twice (a replay after a crash, a worker holding several partitions) counts once.

The index keeps ``IMEI_INDEX_SIZE`` numbers per IMEI (on overflow the oldest use goes, ties by
msisdn) and the same number of switches; a number's latest switch only (the previous one is
unswitched).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["HandsetIndex", "Switch", "IMEI_INDEX_SIZE", "SWITCHED", "LATEST"]

IMEI_INDEX_SIZE = 4  # numbers (and switches) remembered per IMEI
NODAY = -(2**31)

# use() flags
SWITCHED = 1  # a handset new to the number, which used another one before
LATEST = 2  # ... and it is the number's latest switch (indexed as such)


class Switch(NamedTuple):
    """A number's switch into a handset, for the engines that hold the other numbers."""

    imei: int
    msisdn: str
    day: int
    flags: int  # SWITCHED, with LATEST when it is the number's latest switch (indexed)
    old: int = 0  # with LATEST: the handset of the number's previous latest switch (unswitched)


class HandsetIndex:
    """IMEI -> {msisdn: last day of use} and IMEI -> {msisdn: day it switched to it}."""

    def __init__(self, dual_sim_days: int, size: int = IMEI_INDEX_SIZE) -> None:
        self.dual = int(dual_sim_days)
        self.size = size
        self.numbers: dict[int, dict[str, int]] = {}
        self.switches: dict[int, dict[str, int]] = {}

    # ------------------------------------------------------------------ operations
    def use(self, h: int, m: str, d: int, flags: int = 0, old_switch: int = 0) -> list[tuple[str, int]] | None:
        """Number ``m`` used handset ``h`` on day ``d``. Returns the evidence it gives as
        [(msisdn, evidence day)], or None when the index is full of later numbers (not indexed).
        ``old_switch``: the number's previous latest switch, unswitched here."""
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
        # a switch: the handset now carries another of the numbers (as another engine's switch)
        ev = self.remote_switch(h, m, d, flags, old_switch) if flags & SWITCHED else []
        # ... and the same evidence when a number's use of the handset arrives after the switch
        for x, dx in self.switches.get(h, {}).items():
            if x != m and d >= dx - self.dual + 1:
                ev.append((m, dx))
        return ev

    def drop(self, h: int, m: str) -> None:
        _remove(self.numbers, h, m)

    def unswitch(self, h: int, m: str) -> None:
        _remove(self.switches, h, m)

    def switch(self, m: str, h: int, d: int) -> None:
        sw = self.switches.setdefault(h, {})
        if m in sw or len(sw) < self.size:
            sw[m] = max(sw.get(m, NODAY), d)
            return
        mm = min(sw, key=lambda x: (sw[x], x))
        if (d, m) > (sw[mm], mm):
            del sw[mm]
            sw[m] = d

    def remote_switch(self, h: int, m: str, d: int, flags: int, old: int = 0) -> list[tuple[str, int]]:
        """Number ``m`` switched into handset ``h`` on day ``d``: the evidence for this index's
        other numbers (those that used it within the window), and the switch kept (if it is
        ``m``'s latest) so that a use read later gets the same evidence. For another engine's
        number ``m`` is not added to the handset's numbers: its own engine holds its uses."""
        ent = self.numbers.get(h, {})
        ev = [(x, d) for x in ent if x != m and ent[x] >= d - self.dual + 1]
        if flags & LATEST:
            if old and old != h:
                self.unswitch(old, m)
            self.switch(m, h, d)
        return ev

    def expire(self, before: int) -> int:
        """Forget the switches of days before ``before`` (the earliest evidence day a decision still
        reads: their evidence could never be live again); returns how many. Without it the index
        held every number's latest switch for good, churned numbers' included."""
        gone = 0
        for h in list(self.switches):
            sw = self.switches[h]
            old = [m for m, d in sw.items() if d < before]
            for m in old:
                del sw[m]
            gone += len(old)
            if not sw:
                del self.switches[h]
        return gone

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


def _remove(index: dict[int, dict[str, int]], h: int, m: str) -> None:
    ent = index.get(h)
    if ent is not None:
        ent.pop(m, None)
        if not ent:
            del index[h]
