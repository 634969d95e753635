"""``churnwatch backtest --events FILE.ndjson [--config FILE] --alarms-out FILE.ndjson``

Runs the engine over a file of events in arrival order (the file's order, not sorted by ts), in
batches, through the same batch step as the service (:mod:`stream.engine.step`), and writes the
alarms as NDJSON in the contract. Lines that are not valid events are counted and skipped.

Event time drives everything: the file's watermark (the running max of the accepted ts) is the
complete time; each batch is cut at the events that complete a day, so the days are decided between
the same two events whatever ``--batch-size`` is; a ts more than ``max_future_s`` ahead of the
watermark is rejected as future (but three in a row, close together, are a gap in the feed, an
outage, which the live worker takes: the third moves the watermark); ``emitted_at`` is the watermark. A backtest is therefore a
function of the file and the config: the same alarms for any batch size, never the wall clock.
At the end of the file, the days the watermark completed are decided, as a live worker would have.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections import Counter
from contextlib import contextmanager

import orjson

from stream.settings import GC_GEN0

__all__ = ["add_arguments", "run", "backtest"]

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", required=True, metavar="FILE", help="input events, one JSON object per line (NDJSON)")
    p.add_argument("--alarms-out", required=True, metavar="FILE", help="output alarms, NDJSON (alarm contract)")
    p.add_argument("--config", metavar="FILE", help="engine thresholds (TOML); defaults when absent")
    p.add_argument("--batch-size", type=int, default=5000, metavar="N", help="events per batch (default 5000)")
    p.add_argument("--reference", action="store_true", help="use the plain-Python reference engine (slow)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _lines(fh, batch_size: int, chunk_bytes: int = 1 << 22):
    """Batches of ``batch_size`` non-blank lines (stripped), each with the bytes read since the
    previous batch (for the progress bar). The file is read in chunks and split at C speed."""
    batch: list[bytes] = []
    nbytes = 0
    tail = b""
    while True:
        chunk = fh.read(chunk_bytes)
        nbytes += len(chunk)
        if chunk:
            parts = (tail + chunk).split(b"\n")
            tail = parts.pop()
        else:
            parts, tail = [tail], b""
        batch.extend(filter(None, map(bytes.strip, parts)))
        while len(batch) >= batch_size:
            yield batch[:batch_size], nbytes
            del batch[:batch_size]
            nbytes = 0
        if not chunk:
            break
    if batch or nbytes:
        yield batch, nbytes


@contextmanager
def fewer_young_collections(gen0: int = GC_GEN0):
    """Young garbage collections every ``gen0`` allocations instead of Python's 700 meanwhile:
    a batch's decoded objects die before one instead of being promoted and bringing full
    collections of the heap (a 1.1M-line backtest: 0.47 s of GC pauses, 0.29 s of them full
    collections, against 0.11 s; README "Configuration", CHURNWATCH_GC_GEN0)."""
    old = gc.get_threshold()
    gc.set_threshold(gen0, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def backtest(
    events_path: str,
    alarms_path: str,
    config=None,
    batch_size: int = 5000,
    reference: bool = False,
    progress=None,
    engine=None,
) -> dict:
    """Run the backtest; returns the summary dict. ``engine``: an engine to run instead of a new
    one of ``config`` (``churnwatch tune`` passes one that records the decisions' features)."""
    from stream.engine import Engine, EngineConfig, ReferenceEngine
    from stream.engine.shadow import ShadowJoin
    from stream.engine.step import Replay

    cfg = config or EngineConfig()
    # no wall clock: event time drives everything (future = ahead of the watermark; emitted_at = the watermark)
    eng = engine if engine is not None else (ReferenceEngine if reference else Engine)(cfg, clock=None)
    cfg = eng.config
    # the second-SIM join's two keyed stages, in process (the service routes them through Kafka)
    replay = Replay(eng, ShadowJoin(cfg) if cfg.shadow_enabled else None)
    rejects: Counter = Counter()
    phases: Counter = Counter()
    reasons: Counter = Counter()
    n_lines = n_alarms = decided = 0
    t0 = time.perf_counter()
    with fewer_young_collections(), open(events_path, "rb") as fh, open(alarms_path, "wb") as out:
        for raws, nbytes in _lines(fh, batch_size):
            n_lines += len(raws)
            if raws:
                batch, rej = eng.decode(raws)
                for r in rej:
                    rejects[r.reason] += 1
                for res in replay.feed(batch):
                    for r in res.rejects:
                        rejects[r.reason] += 1
                    for a in res.alarms:
                        out.write(orjson.dumps(a) + b"\n")
                        phases[a["phase"]] += 1
                        reasons[a["reason"]] += 1
                    n_alarms += len(res.alarms)
                    decided += len(res.decided)
            if progress is not None:
                progress.update(nbytes)
    elapsed = time.perf_counter() - t0
    applied = sum(v for k, v in eng.counters.items() if k.startswith("applied_"))
    return {
        "lines": n_lines,
        "applied": applied,
        "rejected": dict(sorted(rejects.items())),
        "skipped": eng.counters.get("skipped", 0),
        "subscribers": len(eng),
        "sweeps": decided,
        "decided_days": decided,
        "shadow_evidence": replay.evidence,
        "alarms": n_alarms,
        "alarms_by_phase": dict(sorted(phases.items())),
        "alarms_by_reason": dict(sorted(reasons.items())),
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(n_lines / elapsed) if elapsed > 0 else None,
    }


def run(args: argparse.Namespace) -> int:
    from stream.engine import ConfigError, EngineConfig
    from stream.tools.progress import Progress

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
        print(
            f"events: {summary['lines']:,} lines, {summary['applied']:,} applied, "
            f"{sum(summary['rejected'].values()):,} rejected {summary['rejected']}, {summary['skipped']:,} skipped"
        )
        print(f"subscribers: {summary['subscribers']:,}; days decided: {summary['decided_days']:,}")
        print(
            f"alarms: {summary['alarms']:,} -> {args.alarms_out}  by phase {summary['alarms_by_phase']}  "
            f"by reason {summary['alarms_by_reason']}"
        )
        print(f"time: {summary['elapsed_s']} s ({summary['events_per_s']:,} events/s)")
    return 0
