"""Engine benchmark (not a pytest test): ``python -m bench.bench_engine [--quick] [--profile]``.

* decode + apply + evaluate on deterministic 180-byte call events for 100k subscribers (each with a
  circle of 8 peers, 80% of calls inside it, one handset), in batches, after a warm-up; the median
  of several rounds is reported as events/s on one core. Correctness is checked inside the timed
  region (no rejects, every event applied).
* a sweep over 1,000,000 subscribers (1% of them silent for 8 days) at a day rollover.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import random
import statistics
import time

import orjson

from stream.engine import Engine, EngineConfig
from stream.engine.step import Step

from .events import populate_for_sweep

T0 = 1_760_000_000 - (1_760_000_000 + 8 * 3600) % 86400  # Shanghai midnight
EVENT_BYTES = 180


def make_events(n_subs: int, n_events: int, seed: int, t_start: float, span_s: float) -> list[bytes]:
    """Deterministic 180-byte call events, ts increasing across the list."""
    rng = random.Random(seed)
    out = []
    step = span_s / n_events
    for i in range(n_events):
        s = rng.randrange(n_subs)
        if rng.random() < 0.8:
            peer = 8613900000000 + (s * 7919 + rng.randrange(8) * 104729) % 100_000_000
        else:
            peer = 8613000000000 + rng.randrange(10**10)
        ts = int(t_start + i * step)
        line = (
            f'{{"type":"call","msisdn":"{8613800000000 + s}","ts":{ts},"direction":"{"out" if i % 3 else "in"}",'
            f'"peer":"{peer}","duration_s":{rng.randrange(1, 600)},"imei":"{356000000000000 + s}","cell_id":"'
        )
        pad = EVENT_BYTES - len(line) - 2
        line += "4" * pad + '"}'
        b = line.encode()
        assert len(b) == EVENT_BYTES, len(b)
        out.append(b)
    return out


def bench_stream(quick: bool, profile: bool, batch_size: int) -> float:
    n_subs = 100_000
    n_events = 200_000 if quick else 1_000_000
    rounds = 3 if quick else 5
    eng = Engine(EngineConfig(), clock=lambda: 4e9)
    step = Step(eng)  # the service's batch step: apply, immediate alarms, the days event time completed
    # warm-up: one full day of traffic so that every subscriber has state
    warm = make_events(n_subs, n_events, seed=1, t_start=T0, span_s=0.4 * 86400)
    for i in range(0, len(warm), batch_size):
        b, rej = eng.decode(warm[i : i + batch_size])
        step(b, lambda ap: eng.watermark_s)
    gc.collect()
    gc.freeze()
    rates = []
    prof = cProfile.Profile() if profile else None
    for r in range(rounds):
        evs = make_events(n_subs, n_events, seed=100 + r, t_start=T0 + (0.4 + 0.1 * r) * 86400, span_s=0.1 * 86400)
        applied0 = eng.counters.get("applied_call", 0)
        alarms = 0
        if prof:
            prof.enable()
        t0 = time.perf_counter()
        for i in range(0, n_events, batch_size):
            b, rej = eng.decode(evs[i : i + batch_size])
            res = step(b, lambda ap: eng.watermark_s)
            alarms += len(res.alarms)
            if rej or res.rejects:  # correctness inside the timed region
                raise AssertionError(f"unexpected rejects: {rej[:3]} {res.rejects[:3]}")
        dt = time.perf_counter() - t0
        if prof:
            prof.disable()
        assert eng.counters["applied_call"] - applied0 == n_events, "not every event was applied"
        rates.append(n_events / dt)
        print(f"round {r}: {n_events:,} events in {dt:.3f} s = {n_events / dt:,.0f} events/s ({alarms} alarms)")
    # baseline: orjson.loads of the same batches alone (the floor any decode pays)
    base = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(0, n_events, batch_size):
            orjson.loads(b"[" + b",".join(evs[i : i + batch_size]) + b"]")
        base.append(n_events / (time.perf_counter() - t0))
    print(f"baseline orjson.loads only: median {statistics.median(base):,.0f} events/s")
    med = statistics.median(rates)
    print(
        f"decode + batch step: median {med:,.0f} events/s over {rounds} rounds "
        f"({n_subs:,} subscribers, {EVENT_BYTES}-byte call events, batch {batch_size}, target 1,000,000)"
    )
    print(f"state: {eng.state_bytes_per_subscriber} bytes/subscriber (target <= 2048)")
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return med


def bench_sweep(quick: bool) -> float:
    n = 200_000 if quick else 1_000_000
    eng = Engine(EngineConfig(), clock=lambda: 4e9)
    # populate: one call per subscriber; 1% of them a week earlier (silent by the sweep)
    t = time.perf_counter()
    populate_for_sweep(eng, n)
    print(f"sweep setup: {len(eng):,} subscribers in {time.perf_counter() - t:.1f} s")
    times = []
    now = eng.config.day_start_s(eng.day_of(eng.watermark_s) + 1)
    for r in range(3):
        t0 = time.perf_counter()
        alarms = eng.sweep(now + r)
        times.append(time.perf_counter() - t0)
    print(
        f"sweep over {len(eng):,} subscribers: median {statistics.median(times) * 1000:.1f} ms "
        f"(rounds {', '.join(f'{x * 1000:.1f}' for x in times)} ms; {len(alarms)} alarms; target <= 100 ms for 1,000,000)"
    )
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_engine")
    p.add_argument("--quick", action="store_true", help="smaller rounds (200k events, 200k-subscriber sweep)")
    p.add_argument("--profile", action="store_true", help="cProfile the timed rounds")
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--skip-sweep", action="store_true")
    args = p.parse_args(argv)
    bench_stream(args.quick, args.profile, args.batch_size)
    if not args.skip_sweep:
        bench_sweep(args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
