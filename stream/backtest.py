"""``churnwatch backtest --events FILE.ndjson [--config FILE] --alarms-out FILE.ndjson``

Runs the engine over a file of events in arrival order (the file's order, not sorted by ts), in
batches, sweeping at each event-time day rollover and once more at the end of the file, and writes the
alarms as NDJSON in the contract. Lines that are not valid events are counted and skipped.

Event time drives everything, including the engine's clock: while a batch is applied the clock reads
the batch's latest plausible ts (so the clock bound ``ts > clock + max_future_s`` and the watermark bound ``ts > watermark + max_watermark_jump_s`` reject
future events), and ``emitted_at`` is the watermark. A backtest of a historical or synthetic file is
therefore deterministic and never depends on the wall clock.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter

import orjson

__all__ = ["add_arguments", "run", "backtest"]

logger = logging.getLogger(__name__)

PLAUSIBLE_JUMP_S = 30 * 86400  # a batch's ts beyond watermark + this do not move the backtest clock


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", required=True, metavar="FILE", help="input events, one JSON object per line (NDJSON)")
    p.add_argument("--alarms-out", required=True, metavar="FILE", help="output alarms, NDJSON (alarm contract)")
    p.add_argument("--config", metavar="FILE", help="engine thresholds (TOML); defaults when absent")
    p.add_argument("--batch-size", type=int, default=5000, metavar="N", help="events per batch (default 5000)")
    p.add_argument("--reference", action="store_true", help="use the plain-Python reference engine (slow)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _lines(fh, batch_size: int):
    batch: list[bytes] = []
    nbytes = 0
    for line in fh:
        nbytes += len(line)
        s = line.strip()
        if not s:
            continue
        batch.append(s)
        if len(batch) >= batch_size:
            yield batch, nbytes
            batch, nbytes = [], 0
    if batch or nbytes:
        yield batch, nbytes


def backtest(events_path: str, alarms_path: str, config=None, batch_size: int = 5000, reference: bool = False,
             progress=None) -> dict:
    """Run the backtest; returns the summary dict."""
    import numpy as np

    from stream.engine import Engine, EngineConfig, ReferenceEngine

    cfg = config or EngineConfig()
    state = {"now": 0.0}

    def clock() -> float:
        return state["now"]

    from stream.engine.shadow import ShadowJoin

    eng = (ReferenceEngine if reference else Engine)(cfg, clock=clock)
    # the second-SIM join's two keyed stages, in process (the service routes them through Kafka)
    join = ShadowJoin(cfg) if cfg.shadow_enabled else None
    n_evidence = 0
    rejects: Counter = Counter()
    phases: Counter = Counter()
    reasons: Counter = Counter()
    n_lines = n_alarms = sweeps = 0
    t0 = time.perf_counter()
    last_day = None
    with open(events_path, "rb") as fh, open(alarms_path, "wb") as out:
        def emit(alarms):
            nonlocal n_alarms
            for a in alarms:
                out.write(orjson.dumps(a) + b"\n")
                phases[a["phase"]] += 1
                reasons[a["reason"]] += 1
            n_alarms += len(alarms)

        for raws, nbytes in _lines(fh, batch_size):
            n_lines += len(raws)
            if raws:
                batch, rej = eng.decode(raws)
                for r in rej:
                    rejects[r.reason] += 1
                if len(batch):
                    # the file's own "now" while this batch is read: its latest plausible ts
                    wm0 = eng.watermark_s
                    ref = wm0 if wm0 is not None else float(np.median(batch.ts))
                    ok = batch.ts[batch.ts <= ref + PLAUSIBLE_JUMP_S]
                    if len(ok):
                        state["now"] = max(state["now"], float(ok.max()))
                touched = eng.apply(batch)
                contacts = eng.last_contacts
                if eng.watermark_s is not None:
                    state["now"] = eng.watermark_s  # emitted_at = event time
                for r in eng.last_rejects:
                    rejects[r.reason] += 1
                wm = eng.watermark_s
                if wm is not None:
                    day = eng.day_of(wm)
                    if last_day is not None and day > last_day:
                        for d in range(max(last_day + 1, day - 60), day + 1):
                            emit(eng.sweep(cfg.day_start_s(d)))
                            sweeps += 1
                    last_day = day if last_day is None else max(last_day, day)
                emit(eng.evaluate(touched))
                if join is not None and wm is not None:
                    evidence = join.step(contacts, eng.take_shadow_publications(), eng.day_of(wm))
                    n_evidence += len(evidence)
                    emit(eng.evaluate(eng.apply_shadow(evidence)))
            if progress is not None:
                progress.update(nbytes)
        if eng.watermark_s is not None:
            emit(eng.sweep(eng.watermark_s))
            sweeps += 1
    elapsed = time.perf_counter() - t0
    applied = sum(v for k, v in eng.counters.items() if k.startswith("applied_"))
    return {
        "lines": n_lines,
        "applied": applied,
        "rejected": dict(sorted(rejects.items())),
        "skipped": eng.counters.get("skipped", 0),
        "subscribers": len(eng),
        "sweeps": sweeps,
        "shadow_evidence": n_evidence,
        "alarms": n_alarms,
        "alarms_by_phase": dict(sorted(phases.items())),
        "alarms_by_reason": dict(sorted(reasons.items())),
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(n_lines / elapsed) if elapsed > 0 else None,
    }


def run(args: argparse.Namespace) -> int:
    from stream.engine import ConfigError, EngineConfig
    from stream.progress import Progress

    try:
        cfg = EngineConfig.from_toml(args.config) if args.config else EngineConfig()
    except ConfigError as exc:
        print(f"churnwatch backtest: {exc}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("churnwatch backtest: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        total = os.path.getsize(args.events)
    except OSError as exc:
        print(f"churnwatch backtest: cannot read {args.events}: {exc}", file=sys.stderr)
        return 2
    bar = Progress(total, "bytes", enabled=False if args.quiet else None)
    with bar:
        summary = backtest(args.events, args.alarms_out, cfg, args.batch_size, args.reference, progress=bar)
    if not args.quiet:
        print(f"events: {summary['lines']:,} lines, {summary['applied']:,} applied, "
              f"{sum(summary['rejected'].values()):,} rejected {summary['rejected']}, {summary['skipped']:,} skipped")
        print(f"subscribers: {summary['subscribers']:,}; sweeps: {summary['sweeps']:,}")
        print(f"alarms: {summary['alarms']:,} -> {args.alarms_out}  by phase {summary['alarms_by_phase']}  "
              f"by reason {summary['alarms_by_reason']}")
        print(f"time: {summary['elapsed_s']} s ({summary['events_per_s']:,} events/s)")
    return 0
