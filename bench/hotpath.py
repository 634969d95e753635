"""In-process benchmarks: the hot path (decode + the service's batch step), the sweep, state and memory.

``python -m bench.hotpath sweep --subs N`` runs one sweep measurement in this process and prints
JSON (``bench.run`` starts it in a fresh subprocess per size, so resident memory is per size).

Hot path (issue 6 item 1), for ``n_subs`` subscribers:

* warm-up: ``max(n_subs, ...)`` events that visit every subscriber once (so all have state), then
  ``gc.collect(); gc.freeze()`` as a long-running worker would after start-up;
* rounds: fresh deterministic events (calls/SMS/recharges, see ``bench.events``) of the same day,
  in batches; the median of the rounds is reported, both per wall second and per CPU second of
  this process ("per core": the machine is shared, CPU time is what the process itself used);
* correctness inside the timed region: no decode/apply rejects, and the engine's applied
  counters grow by exactly the number of events;
* dirty rounds, interleaved with the clean ones: each round's payloads in the dirty variant of
  ``bench.decode_dirty`` (0.1% malformed lines of every decode reject reason, 3% late, shuffled
  field order, optional fields absent), decoded with their Kafka keys as the service does; checked:
  exactly the malformed lines rejected, every other event applied (issue 12: dirty >= 0.9x clean);
* side by side, in the same run, on the same payloads: orjson alone (the ceiling: the engine's
  own one-``loads``-per-batch trick, and one ``loads`` per message for reference) and the
  plain-Python ``ReferenceEngine`` (warmed the same way, on the first events of each round).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import time

import orjson

from stream.engine import Engine, EngineConfig, ReferenceEngine

from .events import T0, make_events, populate_for_sweep

__all__ = ["bench_hotpath", "bench_sweep", "rss_bytes", "peak_rss_bytes"]

DAY = 86400


def _status_bytes(pid: int | str, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` in bytes (0 when absent)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid: int | str = "self") -> int:
    return _status_bytes(pid, "VmRSS:")


def peak_rss_bytes(pid: int | str = "self") -> int:
    return _status_bytes(pid, "VmHWM:")


def _applied(eng) -> int:
    return sum(v for k, v in eng.counters.items() if k.startswith("applied_"))


def _run_batches(eng, evs: list[bytes], batch_size: int, keys: list[bytes] | None = None) -> tuple[int, int]:
    """decode + the service's batch step (apply, immediate alarms, the days event time completed)
    over ``evs`` (with their Kafka ``keys``, as the service decodes, when given): (alarms, decode
    rejects). Raises on any apply reject (late/future: none in these payloads), checked inside the
    timed region."""
    from stream.engine.step import Step

    step = Step(eng)
    alarms = rejected = 0
    for i in range(0, len(evs), batch_size):
        b, rej = eng.decode(evs[i : i + batch_size], None if keys is None else keys[i : i + batch_size])
        res = step(b, lambda ap: eng.watermark_s)
        alarms += len(res.alarms)
        rejected += len(rej)
        if res.rejects:
            raise AssertionError(f"unexpected apply rejects: {list(res.rejects)[:3]}")
    return alarms, rejected


def _dirty(evs: list[bytes], seed: int):
    from .decode_dirty import dirty_variant
    from .events import key_of

    return dirty_variant(evs, [key_of(x) for x in evs], seed)


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    w1, c1 = time.perf_counter(), time.process_time()
    return out, w1 - w0, c1 - c0


def _profile_summary(prof: cProfile.Profile, limit: int = 18) -> dict:
    st = pstats.Stats(prof)
    total = max(st.total_tt, 1e-9)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append(
            {
                "function": f"{os.path.relpath(file) if file.startswith('/') else file}:{line}({func})",
                "self_s": tt,
                "cum_s": ct,
                "calls": nc,
            }
        )
    by_self = sorted(rows, key=lambda r: -r["self_s"])[:limit]
    by_cum = sorted(rows, key=lambda r: -r["cum_s"])[:limit]
    for r in by_self + by_cum:
        r["self_pct"] = round(100 * r["self_s"] / total, 1)
        r["cum_pct"] = round(100 * r["cum_s"] / total, 1)
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(limit)
    return {"total_s": total, "by_self": by_self, "by_cum": by_cum, "text": s.getvalue()}


def bench_hotpath(
    n_subs: int,
    n_events: int,
    rounds: int,
    batch_size: int = 10_000,
    ref_events: int = 50_000,
    profile: bool = True,
    reference: bool = True,
    dirty: bool = True,
    log=print,
) -> dict:
    cfg = EngineConfig()
    clock = lambda: 4e9  # noqa: E731 - events are in 2025: never "future"
    warm_n = max(n_subs, min(2 * n_subs, 400_000))
    warm = make_events(n_subs, warm_n, seed=1, t_start=T0, span_s=0.4 * DAY, cover_first=True)
    eng = Engine(cfg, clock=clock)
    t = time.perf_counter()
    _run_batches(eng, warm, batch_size)
    log(f"  warm-up: {len(eng):,} subscribers, {warm_n:,} events in {time.perf_counter() - t:.1f} s")
    assert len(eng) == n_subs, (len(eng), n_subs)
    gc.collect()
    gc.freeze()
    payloads = [
        make_events(
            n_subs,
            n_events,
            seed=100 + r,
            t_start=T0 + (0.4 + 0.5 * r / max(1, rounds)) * DAY,
            span_s=0.5 * DAY / max(1, rounds),
        )
        for r in range(rounds + 1)
    ]
    nbytes = sum(map(len, payloads[0])) / n_events
    # the dirty variant of each round's payloads (bench.decode_dirty: 0.1% malformed of every decode
    # reject reason, 3% late, shuffled field order, optional fields absent), decoded with keys
    dirties = [_dirty(p, seed=300 + r) for r, p in enumerate(payloads[:rounds])] if dirty else []
    wall, cpu, dcpu = [], [], []
    for r in range(rounds):  # clean and dirty rounds interleaved
        evs = payloads[r]
        a0 = _applied(eng)
        (alarms, rej), dw, dc = _timed(lambda eng=eng, evs=evs: _run_batches(eng, evs, batch_size))
        got = _applied(eng) - a0
        assert got == n_events and rej == 0, f"applied {got} of {n_events}, {rej} rejected"
        wall.append(n_events / dw)
        cpu.append(n_events / dc if dc > 0 else float("nan"))
        log(f"  round {r}: {n_events / dw:,.0f} ev/s wall, {n_events / max(dc, 1e-9):,.0f} ev/s cpu ({alarms} alarms)")
        if dirty:
            devs, dkeys, expect = dirties[r]
            a0 = _applied(eng)
            (_, rej), _dw, dc = _timed(
                lambda eng=eng, devs=devs, dkeys=dkeys: _run_batches(eng, devs, batch_size, dkeys)
            )
            got = _applied(eng) - a0
            assert rej == len(expect) and got == n_events - rej, (
                f"dirty: applied {got}, rejected {rej} of {len(expect)}"
            )
            dcpu.append(n_events / max(dc, 1e-9))
            log(f"  round {r} dirty: {dcpu[-1]:,.0f} ev/s cpu ({rej} malformed rejected)")
    prof = None
    if profile:  # one extra round under cProfile, outside the timed rounds
        prof = cProfile.Profile()
        prof.enable()
        _run_batches(eng, payloads[rounds], batch_size)
        prof.disable()

    # the ceiling: orjson alone on the same payloads
    def joined(evs):
        loads = orjson.loads
        for i in range(0, len(evs), batch_size):
            loads(b"[" + b",".join(evs[i : i + batch_size]) + b"]")

    def per_message(evs):
        loads = orjson.loads
        for x in evs:
            loads(x)

    ceil_w, ceil_c, per_w, per_c = [], [], [], []
    for r in range(rounds):
        _, dw, dc = _timed(lambda r=r: joined(payloads[r]))
        ceil_w.append(n_events / dw)
        ceil_c.append(n_events / max(dc, 1e-9))
        _, dw, dc = _timed(lambda r=r: per_message(payloads[r]))
        per_w.append(n_events / dw)
        per_c.append(n_events / max(dc, 1e-9))

    res = {
        "subscribers": n_subs,
        "events_per_round": n_events,
        "rounds": rounds,
        "batch_size": batch_size,
        "mean_event_bytes": round(nbytes, 1),
        "engine_events_per_s_wall": statistics.median(wall),
        "engine_events_per_s_cpu": statistics.median(cpu),
        "engine_rounds_wall": wall,
        "ceiling_orjson_batch_events_per_s_wall": statistics.median(ceil_w),
        "ceiling_orjson_batch_events_per_s_cpu": statistics.median(ceil_c),
        "orjson_per_message_events_per_s_cpu": statistics.median(per_c),
        # the ceiling: the faster of orjson's two ways over the same payloads
        "ceiling_events_per_s_cpu": max(statistics.median(ceil_c), statistics.median(per_c)),
        "state_bytes_per_subscriber": eng.state_bytes_per_subscriber,
        "rss_bytes": rss_bytes(),
    }
    res["ratio_to_ceiling"] = res["engine_events_per_s_cpu"] / res["ceiling_events_per_s_cpu"]
    if dirty:
        res["dirty_events_per_s_cpu"] = statistics.median(dcpu)
        res["dirty_to_clean"] = res["dirty_events_per_s_cpu"] / res["engine_events_per_s_cpu"]
        res["dirty_malformed"] = sum(len(d[2]) for d in dirties)
    del eng
    gc.unfreeze()
    gc.collect()

    if reference:
        ref = ReferenceEngine(cfg, clock=clock)
        ref_warm = warm if n_subs <= 200_000 else None
        if ref_warm is not None:
            t = time.perf_counter()
            _run_batches(ref, ref_warm, batch_size)
            log(f"  reference warm-up: {len(ref):,} subscribers in {time.perf_counter() - t:.1f} s")
        rw, rc = [], []
        m = min(ref_events, n_events)
        for r in range(min(rounds, 3)):
            evs = payloads[r][:m]
            a0 = _applied(ref)
            _, dw, dc = _timed(lambda evs=evs: _run_batches(ref, evs, batch_size))
            assert _applied(ref) - a0 == m
            rw.append(m / dw)
            rc.append(m / max(dc, 1e-9))
        res["reference_events_per_s_wall"] = statistics.median(rw)
        res["reference_events_per_s_cpu"] = statistics.median(rc)
        res["reference_events_per_round"] = m
        res["reference_warmed"] = ref_warm is not None
        res["ratio_to_reference"] = res["engine_events_per_s_cpu"] / res["reference_events_per_s_cpu"]
        del ref
        gc.collect()
    if prof is not None:
        res["profile"] = _profile_summary(prof)
    return res


def bench_service_path(n_subs: int, n_events: int, batch_size: int = 2000, log=print) -> dict:
    """The in-process share of the worker's per-batch work, stage by stage, at the service's batch
    size: engine (decode + apply), one ``Engine.snapshot`` per touched subscriber, and
    one RocksDB write (rocksdict WriteBatch, as the worker's store flush) of each snapshot. Kafka I/O and Faust's per-event
    machinery are not in it: the end-to-end profile shows those."""
    import shutil
    import tempfile

    from rocksdict import Options, Rdict, WriteBatch

    eng = Engine(EngineConfig(), clock=lambda: 4e9)
    warm = make_events(n_subs, n_subs, seed=1, t_start=T0, span_s=0.4 * DAY, cover_first=True)
    _run_batches(eng, warm, 10_000)
    del warm
    evs = make_events(n_subs, n_events, seed=300, t_start=T0 + 0.45 * DAY, span_s=0.1 * DAY)
    tmp = tempfile.mkdtemp(prefix="bench-rocks-")
    db = Rdict(tmp, options=Options(raw_mode=True))  # bytes in and out, as Faust's store
    t_eng = t_snap = t_put = 0.0
    writes = 0
    nbytes = 0
    try:
        for i in range(0, n_events, batch_size):
            c0 = time.process_time()
            b, rej = eng.decode(evs[i : i + batch_size])
            touched = eng.apply(b).rows
            c1 = time.process_time()
            ms = eng.msisdns(touched)
            snaps = eng.snapshot_many(touched)  # as the service does it: all of a batch's snapshots in one gather
            c2 = time.process_time()
            # one WriteBatch, as the worker's store flush writes (stream/service/faust_adapter.py:
            # put_many; until 2026-12-07 this bench put each snapshot through a pickling Rdict:
            # ~5 us per write against ~1.5)
            wb = WriteBatch(raw_mode=True)
            for m, v in zip(ms, snaps, strict=False):
                wb.put(m.encode(), v)
            db.write(wb)
            c3 = time.process_time()
            t_eng += c1 - c0
            t_snap += c2 - c1
            t_put += c3 - c2
            writes += len(ms)
            nbytes += sum(map(len, snaps))
    finally:
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)
    us = lambda t: 1e6 * t / n_events  # noqa: E731
    res = {
        "subscribers": n_subs,
        "events": n_events,
        "batch_size": batch_size,
        "state_writes_per_event": writes / n_events,
        "snapshot_bytes": nbytes / max(1, writes),
        "engine_us_per_event": us(t_eng),
        "snapshot_us_per_event": us(t_snap),
        "rocksdb_put_us_per_event": us(t_put),
        "in_process_events_per_s": n_events / (t_eng + t_snap + t_put),
        "snapshot_method": "Engine.snapshot_many",
    }
    log(
        f"  service path in process (batch {batch_size:,}): engine {res['engine_us_per_event']:.1f} us/event, snapshot "
        f"{res['snapshot_us_per_event']:.1f}, RocksDB put {res['rocksdb_put_us_per_event']:.1f} "
        f"({res['state_writes_per_event']:.2f} state writes of {res['snapshot_bytes']:,.0f} B per event) -> {res['in_process_events_per_s']:,.0f} ev/s"
    )
    return res


def bench_sweep(n: int, rounds: int = 3) -> dict:
    rss0 = rss_bytes()
    eng = Engine(EngineConfig(), clock=lambda: 4e9)
    t = time.perf_counter()
    populate_for_sweep(eng, n)
    setup = time.perf_counter() - t
    gc.collect()
    gc.freeze()
    rss1 = rss_bytes()
    now = eng.config.day_start_s(eng.day_of(eng.watermark_s) + 1)
    times = []
    alarms = []
    for r in range(rounds):
        t0 = time.perf_counter()
        alarms = eng.sweep(now + r)
        times.append(time.perf_counter() - t0)
    silent = len(range(0, n, 100))
    return {
        "subscribers": len(eng),
        "setup_s": setup,
        "sweep_s_median": statistics.median(times),
        "sweep_s_rounds": times,
        "sweep_s_per_million": statistics.median(times) / (len(eng) / 1e6),
        "alarms_first_sweep_expected_silent": silent,
        "alarms_last_round": len(alarms),
        "rss_bytes_before": rss0,
        "rss_bytes_after": rss1,
        "rss_bytes_per_subscriber": (rss1 - rss0) / max(1, len(eng)),
        "state_bytes_per_subscriber": eng.state_bytes_per_subscriber,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hotpath")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("--subs", type=int, required=True)
    s.add_argument("--rounds", type=int, default=3)
    h = sub.add_parser("hotpath")
    h.add_argument("--subs", type=int, default=100_000)
    h.add_argument("--events", type=int, default=200_000)
    h.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if args.cmd == "sweep":
        print(json.dumps(bench_sweep(args.subs, args.rounds)))
    else:
        res = bench_hotpath(args.subs, args.events, args.rounds, log=lambda m: print(m, file=sys.stderr))
        res.pop("profile", None)
        print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
