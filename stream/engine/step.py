"""One batch step, written once: the service and the backtest both run it.

``Step(engine)(batch, complete_s, evidence)`` applies a decoded batch, emits the immediate alarms
(care-line dials), decides every day that event time has completed, and confirms second-SIM
evidence. It returns what happened (:class:`StepResult`); nothing is left on attributes.

The decision rule (README "When alarms are decided"):

* **Day decisions.** Day ``D`` is decided once the complete event time (the minimum over the
  inputs: Flink's and Beam's watermark) has reached ``decision_grace_s`` (default 12 h) into day
  ``D``: :meth:`Engine.decide` evaluates, as of the start of ``D``, reading only the complete days
  before it, every subscriber active on day ``D - 1``, silent, lapsing, with live dual-SIM or
  second-SIM evidence, or not healthy. Events that arrive later than the grace still count
  for later days, not for days already decided.
* **Immediate alarms.** A dial to a competitor's care line trips on the event itself
  (:meth:`Engine.immediate`): judged one dial at a time in arrival order, not at a batch boundary,
  in the episode that the decisions up to its own point give (the day its time lets decide,
  :meth:`Engine.dial_point`). A dial applied before those decisions were made (a worker reading
  ahead of its decisions while it catches up) waits in the subscriber's state and is judged right
  after that day's decision (:meth:`Engine.judge_dials`); live, the decisions are there already.

A decision reads features as of the start of its day (the ring's days before it; silence and
recharge lapse from the days before it, whatever arrived for day ``D`` since), so it does not
depend on how far past the boundary the inputs had read when it ran. Both callers hand in the
complete time: the service the minimum over its partitions, the backtest the file's running
watermark, cut at each event that completes a day (:func:`segments`), so that the backtest is the
same for any batch size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .core import NO_CONTACTS as _EMPTY_OBS
from .core import NO_ROWS, Applied
from .decode import Batch

__all__ = ["Step", "StepResult", "Replay", "segments", "MAX_CATCHUP_DAYS"]

MAX_CATCHUP_DAYS = 60  # at most this many days decided in one step (an input days behind)


class StepResult(NamedTuple):
    alarms: list  # alarm records (contract): immediate ones first, then each decided day's
    rejects: list  # Reject(index, "late" | "future", detail) from apply, by batch index
    rows: np.ndarray  # engine rows whose state changed (applied, decided, confirmed): persist them
    contacts: tuple  # the second-SIM join's observations (competitor number, member, day)
    publications: list  # the second-SIM join's circle publications (decided days)
    skipped: int  # replayed events (at or below the offsets applied)
    decided: list  # the days decided by this step, in order
    confirmed: int  # subscribers whose second-SIM evidence was confirmed
    applied: np.ndarray  # engine rows with applied events (a subset of rows)
    decide_s: float  # seconds spent deciding days
    handset_ops: list  # the switches indexed, for the other workers' engines (engine.route_handsets)
    created: tuple = ((), ())  # apply's rows created and the batch position of the event of each


class Step:
    """``decided``: the last day decided (None until event time is known; a restarted service
    passes the day before the one its persisted watermark completes, which is decided again:
    deciding a day twice changes nothing)."""

    def __init__(self, engine, decided: int | None = None, chunk_rows: int | None = None) -> None:
        self.engine = engine
        self.grace_s = float(engine.config.decision_grace_s)
        self.decided = decided
        # rows decided per call at most (None: every due day at once, as the backtest does). A
        # worker holding a million subscribers needs ~11 s to decide a day (bench/README, section
        # 2); in parts of chunk_rows between its batches, events and immediate alarms keep flowing.
        # A part decided after more events arrived reads the same (decisions read the days
        # before theirs), but for events later than the grace, which count anyway only then.
        self.chunk_rows = chunk_rows
        self._pending: tuple[int, np.ndarray, int] | None = None  # (day, candidate rows, next position)

    def due(self, complete_s: float) -> int:
        """The last day that event time ``complete_s`` lets decide."""
        return self.engine.day_of(complete_s - self.grace_s)

    def __call__(
        self,
        batch: Batch,
        complete_s: float | None | Callable[[Applied], float | None],
        evidence=(),
        switches=(),
    ) -> StepResult:
        """``complete_s``: the complete event time after this batch, or a function of what apply
        did that returns it (the service's partition times move with the accepted events).
        ``evidence``: the second-SIM join's candidates; ``switches``: other engines' handset
        switches (stream/engine/handsets.py), both applied before the decisions."""
        eng = self.engine
        # dials whose point this step has decided already: restored from the snapshot of a
        # subscriber this worker took over (they wait for the decisions of their point)
        waited, waited_rows = eng.judge_dials(self.decided) if self.decided is not None else ([], NO_ROWS)
        ap: Applied = eng.apply(batch, judged_through=self.decided)
        if callable(complete_s):
            complete_s = complete_s(ap)
        alarms = eng.immediate(waited) + eng.immediate(ap.immediate)
        rows = [ap.rows, waited_rows]
        confirmed = eng.apply_shadow(evidence) if evidence else NO_ROWS
        if len(confirmed):
            rows.append(confirmed)
        if switches:
            rows.append(eng.apply_switches(switches))
        decided = []
        t0 = time.perf_counter()
        if complete_s is not None and math.isfinite(complete_s):
            decided = self._decide(complete_s, alarms, rows)
        dt = time.perf_counter() - t0
        rows = [r for r in rows if len(r)]
        out = np.unique(np.concatenate(rows)) if len(rows) > 1 else (rows[0] if rows else NO_ROWS)
        return StepResult(
            alarms,
            ap.rejects,
            out,
            ap.contacts,
            eng.take_shadow_publications(),
            ap.skipped,
            decided,
            len(confirmed),
            ap.rows,
            dt,
            eng.take_handset_ops() if eng.route_handsets else [],
            ap.created,
        )

    @property
    def deciding(self) -> bool:
        """A day's decision is under way (in parts)."""
        return self._pending is not None

    def _decide(self, complete_s: float, alarms: list, rows: list) -> list[int]:
        day = self.due(complete_s)
        if self.decided is None:  # the first time: nothing before it is judged
            self.decided = day
            return []
        eng = self.engine
        done: list[int] = []
        budget = self.chunk_rows if self.chunk_rows else None
        while True:
            if self._pending is None:
                if day <= self.decided:
                    break
                d = max(self.decided + 1, day - MAX_CATCHUP_DAYS + 1)
                self._pending = (d, eng.decide_candidates(d), 0)
            d, cand, pos = self._pending
            end = len(cand) if budget is None else min(len(cand), pos + budget)
            dec = eng.decide_rows(d, cand[pos:end])
            alarms.extend(dec.alarms)
            rows.append(dec.rows)
            if budget is not None:
                budget -= end - pos
            if end < len(cand):
                self._pending = (d, cand, end)
                break
            self._pending = None
            self.decided = d
            done.append(d)
            hits, judged = eng.judge_dials(d)  # the dials that waited for this day's decisions
            alarms.extend(eng.immediate(hits))
            rows.append(judged)
            if budget is not None and budget <= 0:
                break
        return done


def segments(step: Step, batch: Batch) -> list[tuple[np.ndarray, float | None]]:
    """Cut a batch read from one ordered stream (a file) where its running watermark completes a
    day: [(positions, complete time after them)]. Each event that completes a day ends a segment,
    so the decisions fall between the same two events whatever the batch size. The watermark is
    the engine's (the running max of the ts it accepts: late events never move it, future ones
    are rejected against it)."""
    n = len(batch)
    if n == 0:
        return []
    eng = step.engine
    cfg = eng.config
    wm0 = eng.watermark_s
    wm0 = -math.inf if wm0 is None else wm0
    acc = eng.accepts(batch.ts)
    run = np.maximum.accumulate(np.where(acc, batch.ts, -math.inf))
    run = np.maximum(run, wm0)
    ok = np.isfinite(run)
    due = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    due[ok] = np.floor((run[ok] - step.grace_s + cfg.utc_offset_s) / 86400.0).astype(np.int64)
    last = step.decided
    cuts: list[int] = []
    if last is None:  # the first event with a time starts the clock (Step decides nothing before it)
        first = np.flatnonzero(ok)
        if len(first):
            cuts.append(int(first[0]))
            last = int(due[first[0]])
    if last is not None:
        # positions where the due day first exceeds everything before it (and the last decided)
        prev = np.maximum.accumulate(np.r_[last, due[:-1]])
        cuts = sorted(set(cuts) | set(np.flatnonzero(due > np.maximum(prev, last)).tolist()))
    out = []
    start = 0
    for c in cuts:
        out.append((np.arange(start, c + 1), float(run[c])))
        start = c + 1
    if start < n:
        out.append((np.arange(start, n), float(run[-1]) if ok[-1] else None))
    return out


class Replay:
    """One ordered stream (a file, in arrival order) through the step, with the second-SIM join in
    process: the backtest's loop. Each batch is cut where the stream's watermark completes a day
    (:func:`segments`); the join observes every segment's contacts and meets the publications of
    each decided day, and its evidence is confirmed at once, against the state of that decision
    point. The result is the same for any batch size."""

    def __init__(self, engine, join=None, keep_evidence: bool = False) -> None:
        self.step = Step(engine)
        self.join = join
        self.evidence = 0  # candidate pairs the join produced
        self.kept: list[dict] | None = [] if keep_evidence else None  # (tests) the pairs themselves
        self.contacts = 0  # contact observations sent to the join

    def feed(self, batch: Batch) -> list[StepResult]:
        out: list[StepResult] = []
        for pos, complete_s in segments(self.step, batch):
            self._run(batch.take(pos), complete_s, (), out)
        return out

    def _run(self, part: Batch, complete_s: float | None, evidence, out: list) -> None:
        res = self.step(part, complete_s, evidence)
        out.append(res)
        if self.join is None:
            return
        self.contacts += len(res.contacts[0])
        self.join.observe(res.contacts)
        if res.decided:  # publications meet the bands once a day is decided
            ev = self.join.step(_EMPTY_OBS, res.publications, res.decided[-1])
            self.evidence += len(ev)
            if self.kept is not None:
                self.kept.extend(ev)
            if ev:
                self._run(Batch.empty(), None, ev, out)
