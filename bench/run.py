"""``python -m bench.run [--quick]``: every churnwatch benchmark, one command (``make bench``).

Writes ``bench/results/<mode>.json`` (and a timestamped copy) and, in full mode, regenerates the
results section of ``bench/README.md`` (between the ``results:begin``/``results:end`` markers).
``--quick`` (``make bench-quick``, CI's smoke test) runs every benchmark on tiny inputs in well
under 90 s: it checks that they run, not how fast. See ``bench/README.md`` for the method.

Benchmark-only extras (not dependencies of the service): ``quixstreams`` (a peer) and ``py-spy``
(the worker profile) are installed into the running interpreter's environment when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["main", "MODES"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"
EXTRAS = {"quixstreams": "quixstreams>=3.10,<4", "py-spy": "py-spy>=0.3"}

# sizes per mode
MODES = {
    "quick": dict(
        hot=[dict(subs=20_000, events=20_000, rounds=2, ref_events=5_000)],
        sweep=[100_000],
        service=dict(subs=20_000, events=20_000),
        e2e=dict(subs=5_000, events=20_000, cap_s=6.0, parallel=True, profile_s=0),
        latency=dict(hist_subs=1_000, duration_s=3.0, warm_s=1.0, rate=None, settle_s=5.0),
        catchup=dict(subs=10_000, events=12_000, profile_s=0),
        shadow=dict(subs=400, days=40),
        port=19894,
    ),
    "full": dict(
        hot=[
            dict(subs=100_000, events=500_000, rounds=5, ref_events=50_000),
            dict(subs=1_000_000, events=1_000_000, rounds=3, ref_events=50_000),
        ],
        sweep=[1_000_000, 2_000_000, 4_000_000, 10_000_000],
        service=dict(subs=100_000, events=200_000),
        e2e=dict(
            subs=100_000,
            # 12 events per subscriber: the rate past each subscriber's first event (with 300,000,
            # until 2026-12-07, a third of the input created subscribers, and the bare consumer's
            # measured window was 0.6 s)
            events=1_200_000,
            cap_s=60.0,
            parallel=False,
            profile_s=20,
            variants=[{"CHURNWATCH_BATCH_SIZE": "10000"}],
        ),
        latency=dict(hist_subs=20_000, duration_s=30.0, warm_s=10.0, rate=None, settle_s=60.0),
        catchup=dict(subs=1_000_000, events=1_200_000, profile_s=20),
        shadow=dict(subs=5_000, days=60),
        port=19893,
    ),
}

TARGETS = {
    "hot_events_per_s": 1_000_000,
    "hot_ratio_to_ceiling": 0.5,
    "hot_ratio_to_reference": 20.0,
    "hot_dirty_to_clean": 0.9,
    "sweep_s_per_million": 0.1,
    "state_bytes_per_subscriber": 2048,
    "e2e_events_per_s": 100_000,
    "e2e_ratio_to_bare": 0.5,
    "e2e_ratio_to_faust": 10.0,
    "e2e_ratio_to_quix": 1.0,
    "latency_p99_s": 1.0,
}


def log(msg: str) -> None:
    print(msg, flush=True)


def ensure_extras() -> dict:
    """Install the benchmark-only extras into this interpreter's environment when missing."""
    missing = []
    try:
        import quixstreams  # noqa: F401
    except ImportError:
        missing.append(EXTRAS["quixstreams"])
    pyspy = Path(sys.executable).parent / "py-spy"
    if not pyspy.exists() and shutil.which("py-spy") is None:
        missing.append(EXTRAS["py-spy"])
    if missing:
        log(f"installing benchmark-only extras: {' '.join(missing)}")
        p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], capture_output=True, text=True)
        import importlib

        importlib.invalidate_caches()
        if p.returncode != 0:  # no registry here: the peers/profiles that need them are skipped, and say so
            log(f"!! could not install {missing}: {p.stderr[-1500:]}")
    out = {}
    try:
        from importlib.metadata import version

        for name in (
            "quixstreams",
            "faust-streaming",
            "aiokafka",
            "orjson",
            "numpy",
            "py-spy",
            "confluent-kafka",
            "rocksdict",
        ):
            try:
                out[name] = version(name)
            except Exception:  # noqa: BLE001
                out[name] = None
    except ImportError:
        pass
    return out


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "stream"], cwd=ROOT, capture_output=True, text=True
        ).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
    except OSError:
        dirty = []
    return {
        "git_dirty_stream_files": dirty,
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "mem_bytes": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": "3.9.1 (local KRaft, stream.dev.kafka)"
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        else os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        "loadavg_at_start": os.getloadavg(),
        "git_commit": commit,
    }


def mem_available() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ----------------------------------------------------------------------------- sections
def run_hotpath(cfg: dict) -> list[dict]:
    from .hotpath import bench_hotpath

    out = []
    for h in cfg["hot"]:
        log(f"[1] hot path: {h['subs']:,} subscribers, {h['events']:,} events x {h['rounds']} rounds")
        r = bench_hotpath(h["subs"], h["events"], h["rounds"], ref_events=h["ref_events"], log=log)
        log(
            f"    engine {r['engine_events_per_s_cpu']:,.0f} ev/s per core | orjson ceiling {r['ceiling_events_per_s_cpu']:,.0f} "
            f"({r['ratio_to_ceiling']:.2f}x) | reference {r.get('reference_events_per_s_cpu', 0):,.0f} ({r.get('ratio_to_reference', 0):.1f}x)"
            f" | dirty {r.get('dirty_events_per_s_cpu', 0):,.0f} ({r.get('dirty_to_clean', 0):.2f}x clean)"
        )
        out.append(r)
    # one reference for every size: where the reference was not warmed (1M), use the warmed one
    warmed = [r for r in out if r.get("reference_warmed")]
    for r in out:
        if not r.get("reference_warmed") and warmed:
            r["reference_events_per_s_cpu_unwarmed"] = r.get("reference_events_per_s_cpu")
            r["reference_events_per_s_cpu"] = warmed[0]["reference_events_per_s_cpu"]
            r["ratio_to_reference"] = r["engine_events_per_s_cpu"] / r["reference_events_per_s_cpu"]
            r["reference_note"] = f"reference measured at {warmed[0]['subscribers']:,} warmed subscribers"
    return out


def run_sweep(cfg: dict) -> dict:
    """One fresh subprocess per size (resident memory per size); sizes that would not fit in the
    memory available now are not run but extrapolated linearly from the largest measured size."""
    measured = []
    skipped = []
    for n in cfg["sweep"]:
        need = n * 3300 + 500 * 2**20  # ~3.2 KB/subscriber resident (state + index + cache) + interpreter
        avail = mem_available()
        if need > 0.6 * avail:
            skipped.append({"subscribers": n, "needed_bytes": need, "available_bytes": avail})
            log(
                f"[2] sweep {n:,}: skipped (needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available on a shared machine)"
            )
            continue
        log(f"[2] sweep over {n:,} subscribers")
        p = subprocess.run(
            [sys.executable, "-m", "bench.hotpath", "sweep", "--subs", str(n)], cwd=ROOT, capture_output=True, text=True
        )
        if p.returncode != 0:
            raise RuntimeError(f"sweep {n} failed: {p.stderr[-3000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        log(
            f"    {r['sweep_s_median'] * 1000:.1f} ms ({r['sweep_s_per_million']:.3f} s per million), "
            f"RSS {r['rss_bytes_after'] / 2**20:,.0f} MiB ({r['rss_bytes_per_subscriber']:,.0f} B/subscriber), set-up {r['setup_s']:.1f} s"
        )
        measured.append(r)
    out = {"measured": measured, "skipped": skipped}
    if measured:
        big = measured[-1]
        per = big["sweep_s_median"] / big["subscribers"]
        for s in skipped:
            s["sweep_s_extrapolated"] = per * s["subscribers"]
            s["rss_bytes_extrapolated"] = big["rss_bytes_per_subscriber"] * s["subscribers"]
            s["extrapolated_from"] = big["subscribers"]
    return out


def run_e2e(cfg: dict, work: Path) -> dict:
    from .e2e import Broker, Consumer, catchup, latency, settle, throughput

    out: dict = {}
    e, lat, cu = cfg["e2e"], cfg["latency"], cfg["catchup"]
    t = time.perf_counter()
    with Broker(cfg["port"]) as broker:
        log(
            f"[3] local broker at {broker.bootstrap} ({'external' if broker.external else 'started'} in {time.perf_counter() - t:.1f} s)"
        )

        async def all_e2e():
            peers = ["faust"]
            try:
                import quixstreams  # noqa: F401

                peers.append("quix")
            except ImportError:
                out["quix_skipped"] = "quixstreams is not installed and could not be installed"
                log(f"!! {out['quix_skipped']}: the Quix Streams peer is skipped")
            out["throughput"] = await throughput(
                broker.bootstrap,
                e["subs"],
                e["events"],
                e["cap_s"],
                work,
                peers,
                profile_s=e["profile_s"],
                parallel=e["parallel"],
                variants=e.get("variants"),
                log=log,
                broker_pid=broker.pid(),
            )
            rate = lat["rate"] or max(100.0, 0.5 * out["throughput"]["churnwatch"]["events_per_s"])
            # the broker's work after the peers (their changelogs and groups) is not the worker's latency
            quiet = await settle(broker.pid(), max_wait_s=lat["settle_s"])
            log(
                f"[4] latency at {rate:,.0f} ev/s (half the measured maximum); the broker settled after "
                f"{quiet['waited_s']} s (its CPU {quiet['broker_cpu_share']} of a core)"
            )
            out["latency"] = await latency(
                broker.bootstrap,
                rate,
                lat["duration_s"],
                lat["hist_subs"],
                work,
                log=log,
                warm_s=lat["warm_s"],
                broker_pid=broker.pid(),
            )
            L = out["latency"]
            L["settle"] = quiet
            if L.get("p99_s") is not None:
                log(
                    f"    p50 {L['p50_s']:.3f} s, p99 {L['p99_s']:.3f} s over {L['alarms_seen']} alarms ({L['dials']} dials)"
                )
            log(f"[5] catch-up: {cu['events']:,} events of a {cu['subs']:,}-subscriber day")
            out["catchup"] = await catchup(
                broker.bootstrap, cu["subs"], cu["events"], work, profile_s=cu["profile_s"], log=log
            )

        try:
            asyncio.run(all_e2e())
        finally:
            Consumer.stop_all()  # never leave a worker or peer behind (they run in their own sessions)
    return out


# ----------------------------------------------------------------------------- targets
def evaluate_targets(res: dict) -> list[dict]:
    rows = []

    def add(name, value, goal, higher_is_better=True, unit="", note=""):
        if value is None:
            rows.append(
                {
                    "target": name,
                    "value": None,
                    "goal": goal,
                    "met": None,
                    "note": note or "not measured",
                    "higher_is_better": higher_is_better,
                }
            )
            return
        met = value >= goal if higher_is_better else value <= goal
        # how far from the goal, as a factor >= 1: "short by", "over by", or the margin when met
        factor = (goal / value if value else float("inf")) if higher_is_better else (value / goal)
        if met:
            factor = 1 / factor if factor else float("inf")
        gap = (
            f"met, {factor:.2f}x margin"
            if met
            else (
                f"missed: {factor:.1f}x short ({value / goal * 100:.0f}% of the goal)"
                if higher_is_better
                else f"missed: {factor:.1f}x over"
            )
        )
        rows.append(
            {
                "target": name,
                "value": value,
                "goal": goal,
                "met": met,
                "unit": unit,
                "gap": gap,
                "gap_factor": factor,
                "higher_is_better": higher_is_better,
                "note": note,
            }
        )

    for h in res.get("hotpath", []):
        n = f"{h['subscribers'] // 1000}k" if h["subscribers"] < 1_000_000 else f"{h['subscribers'] // 1_000_000}M"
        add(f"hot path events/s per core ({n})", h["engine_events_per_s_cpu"], TARGETS["hot_events_per_s"], unit="ev/s")
        add(f"hot path / orjson ceiling ({n})", h["ratio_to_ceiling"], TARGETS["hot_ratio_to_ceiling"], unit="x")
        add(f"hot path dirty / clean ({n})", h.get("dirty_to_clean"), TARGETS["hot_dirty_to_clean"], unit="x")
        add(
            f"hot path / reference ({n})",
            h.get("ratio_to_reference"),
            TARGETS["hot_ratio_to_reference"],
            unit="x",
            note=h.get("reference_note", ""),
        )
    sw = res.get("sweep", {})
    for m in sw.get("measured", []):
        add(
            f"sweep s per million ({round(m['subscribers'] / 1e6, 1):g}M)",
            m["sweep_s_per_million"],
            TARGETS["sweep_s_per_million"],
            False,
            "s",
        )
    for s in sw.get("skipped", []):
        if s.get("sweep_s_extrapolated") is not None:
            add(
                f"sweep s per million ({s['subscribers'] / 1e6:g}M, extrapolated)",
                s["sweep_s_extrapolated"] / (s["subscribers"] / 1e6),
                TARGETS["sweep_s_per_million"],
                False,
                "s",
                note=f"linear from {s['extrapolated_from']:,}",
            )
    if res.get("hotpath"):
        add(
            "state bytes per subscriber",
            res["hotpath"][0]["state_bytes_per_subscriber"],
            TARGETS["state_bytes_per_subscriber"],
            False,
            "B",
        )
    tp = res.get("e2e", {}).get("throughput")
    if tp:
        add(
            "end to end events/s (1 worker, 12 partitions)",
            tp["churnwatch"]["events_per_s"],
            TARGETS["e2e_events_per_s"],
            unit="ev/s",
        )
        r = tp.get("ratios", {})
        add("end to end / bare consumer", r.get("vs_bare"), TARGETS["e2e_ratio_to_bare"], unit="x")
        add("end to end / idiomatic Faust", r.get("vs_faust"), TARGETS["e2e_ratio_to_faust"], unit="x")
        add(
            "end to end / Quix Streams",
            r.get("vs_quix"),
            TARGETS["e2e_ratio_to_quix"],
            unit="x",
            note="target: ahead (> 1x)",
        )
    lat = res.get("e2e", {}).get("latency")
    if lat:
        add("latency p99 at half the max rate", lat.get("p99_s"), TARGETS["latency_p99_s"], False, "s")
    return rows


# ----------------------------------------------------------------------------- output
def fmt_n(x, unit="") -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and abs(x) < 100:
        s = f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"
    else:
        s = f"{x:,.0f}"
    return s + (f" {unit}" if unit and unit != "x" else ("x" if unit == "x" else ""))


def render_markdown(res: dict) -> str:
    L: list[str] = []
    _md_header(res, L)
    _md_targets(res, L)
    e2e = res.get("e2e", {})
    sections = (  # (renderer, whether its part of the results is there)
        (_md_hotpath, res.get("hotpath")),
        (_md_sweep, res.get("sweep")),
        (_md_throughput, e2e.get("throughput")),
        (_md_service_path, res.get("service_path")),
        (_md_latency, e2e.get("latency")),
        (_md_catchup, e2e.get("catchup")),
        (_md_shadow, res.get("shadow")),
    )
    for render, present in sections:
        if present:
            render(res, L)
    return "\n".join(L)


def _heading(L: list[str], title: str) -> None:
    L += [f"### {title}", ""]


def _para(L: list[str], text: str) -> None:
    """A paragraph: ``text``, then a blank line."""
    L += [text, ""]


def _table(L: list[str], header: str, align: str, rows: Iterable[str]) -> None:
    """A markdown table: ``header``, its ``align`` row, ``rows`` (each a whole ``| ... |`` line), a blank line."""
    L += [header, align, *rows, ""]


def _md_header(res: dict, L: list[str]) -> None:
    """The run: command, date, commit, machine and versions."""
    m = res["machine"]
    _para(
        L,
        f"Generated by `python -m bench.run{' --quick' if res['mode'] == 'quick' else ''}` on **{res['date_utc']}** "
        f"({res['duration_s'] / 60:.1f} min), commit `{m['git_commit']}`"
        + (
            f" with uncommitted changes by other engineers in {', '.join(f'`{x}`' for x in m['git_dirty_stream_files'])}"
            if m.get("git_dirty_stream_files")
            else ""
        )
        + ".",
    )
    _para(
        L,
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs **shared with other work** (load average "
        f"{', '.join(f'{x:.1f}' for x in m['loadavg_at_start'])} at start, "
        f"{', '.join(f'{x:.1f}' for x in m.get('loadavg_at_end') or ())} at the end), {m['mem_bytes'] / 2**30:.0f} GiB RAM, "
        f"{m['os']}, Python {m['python']}, Kafka {m['kafka']} on the same machine. "
        f"Versions: " + ", ".join(f"{k} {v}" for k, v in res.get("versions", {}).items() if v) + ".",
    )


def _md_targets(res: dict, L: list[str]) -> None:
    """The targets table."""
    _heading(L, "Targets")

    def row(t: dict) -> str:
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        op = "≥" if t.get("higher_is_better", True) else "≤"
        return (
            f"| {t['target']} | {fmt_n(t['value'], t.get('unit', ''))} | {op} {fmt_n(t['goal'], t.get('unit', ''))} | {met} | {t.get('gap', '–')}"
            + (f" ({t['note']})" if t.get("note") else "")
            + " |"
        )

    _table(L, "| target | measured | goal | met | by how much |", "|---|---:|---:|:-:|---|", map(row, res["targets"]))


def _md_hotpath(res: dict, L: list[str]) -> None:
    """Section 1: the in-process hot path."""
    _heading(L, "1. Hot path, in process (decode + the batch step, one core)")
    _table(
        L,
        "| subscribers | events/round × rounds | engine ev/s per core (wall) | dirty ev/s per core (dirty / clean) | orjson ceiling ev/s | engine / ceiling | orjson one `loads` per message | reference ev/s | engine / reference |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        (
            f"| {h['subscribers']:,} | {h['events_per_round']:,} × {h['rounds']} | {h['engine_events_per_s_cpu']:,.0f} ({h['engine_events_per_s_wall']:,.0f}) | "
            f"{h.get('dirty_events_per_s_cpu', 0):,.0f} ({h.get('dirty_to_clean', 0):.2f}x) | "
            f"{h['ceiling_events_per_s_cpu']:,.0f} | {h['ratio_to_ceiling']:.2f}x | {h['orjson_per_message_events_per_s_cpu']:,.0f} | "
            f"{h.get('reference_events_per_s_cpu', 0):,.0f}{' *' if h.get('reference_note') else ''} | {h.get('ratio_to_reference', 0):.1f}x |"
            for h in res["hotpath"]
        ),
    )
    _para(
        L,
        f"Events: {res['hotpath'][0]['mean_event_bytes']:.0f} bytes on average (66% calls, 31% SMS, 3% recharges), batches of "
        f"{res['hotpath'][0]['batch_size']:,}. The ceiling is the faster of orjson's two ways over the same payloads "
        f"(one `loads` of the joined batch, as the engine does, or one per message). Dirty: the same kind of payloads "
        f"in `bench.decode_dirty`'s dirty variant (0.1% malformed lines of every decode reject reason, 3% late, shuffled "
        f"field order, optional fields absent), decoded with their keys, in rounds interleaved with the clean ones; "
        f"exactly the malformed lines rejected, every other event applied. "
        + (
            "* "
            + next(h["reference_note"] for h in res["hotpath"] if h.get("reference_note"))
            + " (warming the plain-Python engine with 1M subscribers costs minutes)."
            if any(h.get("reference_note") for h in res["hotpath"])
            else ""
        ),
    )


def _md_sweep(res: dict, L: list[str]) -> None:
    """Section 2: the sweep and memory."""
    sw = res["sweep"]
    _heading(L, "2. Sweep and memory")
    measured = [
        f"| {s['subscribers']:,} | {s['sweep_s_median'] * 1000:.0f} ms | {s['sweep_s_per_million']:.3f} | {s['rss_bytes_after'] / 2**20:,.0f} MiB | {s['rss_bytes_per_subscriber']:,.0f} |"
        for s in sw["measured"]
    ]
    extrapolated = [
        f"| {s['subscribers']:,} (extrapolated) | ~{s['sweep_s_extrapolated'] * 1000:.0f} ms | {s['sweep_s_extrapolated'] / (s['subscribers'] / 1e6):.3f} | ~{s['rss_bytes_extrapolated'] / 2**30:.1f} GiB | – |"
        for s in sw["skipped"]
        if s.get("sweep_s_extrapolated") is not None
    ]
    _table(
        L,
        "| subscribers | sweep (median of 3) | s per million | resident memory (engine process) | resident bytes per subscriber |",
        "|---:|---:|---:|---:|---:|",
        measured + extrapolated,
    )
    if sw["skipped"]:
        _para(
            L,
            "Not run, extrapolated linearly from the largest measured size: "
            + "; ".join(
                f"{s['subscribers']:,} subscribers would need ~{s['needed_bytes'] / 2**30:.0f} GiB with "
                f"{s['available_bytes'] / 2**30:.0f} GiB available on this shared machine"
                for s in sw["skipped"]
            )
            + ".",
        )
    if res.get("hotpath"):
        L.append(
            f"State: **{res['hotpath'][0]['state_bytes_per_subscriber']:,} bytes per subscriber** (`Engine.state_bytes_per_subscriber`)."
        )
    cu = res.get("e2e", {}).get("catchup", {})
    if cu.get("rss_at_all_subs"):
        L.append(
            f"Worker (`churnwatch worker`, Faust + RocksDB) holding {int(cu.get('subscribers_metric') or 0):,} subscribers: "
            f"**{cu['rss_at_all_subs'] / 2**20:,.0f} MiB resident** (peak {cu.get('peak_rss_bytes', 0) / 2**20:,.0f} MiB by the end of the catch-up run)."
        )
    L.append("")


def _md_throughput(res: dict, L: list[str]) -> None:
    """Section 3: end-to-end throughput of the worker and the peers."""
    tp = res["e2e"]["throughput"]
    _heading(L, f"3. End to end, local broker, {tp['partitions']} partitions, one process each")
    _para(
        L,
        f"Same pre-produced input for all: {tp['events']:,} events of {tp['subscribers']:,} subscribers "
        f"({tp['mean_event_bytes']:.0f} bytes; produced at {tp['produce']['events_per_s']:,.0f} ev/s before any consumer starts). "
        f"Sustained = committed events between 5% of the input and the end (or the {tp['cap_s']:.0f} s cap for slow peers) / time.",
    )
    names = {
        "churnwatch": "churnwatch worker (batches → numpy engine → RocksDB table + changelog)",
        "bare": "ceiling: bare aiokafka consumer (reads, does nothing)",
        "faust": "idiomatic Faust: tumbling-window table, one event at a time",
        "quix": "Quix Streams: 1-day tumbling window Count/Sum",
    }

    def consumer_row(k: str, r: dict) -> str:
        ratio = (
            "–"
            if k == "churnwatch"
            else (f"{tp['ratios'].get('vs_' + k):.2f}x" if tp["ratios"].get("vs_" + k) else "–")
        )
        return (
            f"| {names[k]} | {r['events_per_s']:,.0f} | {fmt_n(r.get('events_per_cpu_s'))} | {fmt_n(r.get('cpu_share_of_a_core'))} | "
            f"{r['window_events']:,} | {fmt_n(r.get('first_commit_s'))} s | {'yes' if r['done'] else 'capped'}"
            + (" (error)" if r.get("error") else "")
            + f" | {ratio} |"
        )

    consumers = [consumer_row(k, tp[k]) for k in names if tp.get(k)]
    variants = [
        f"| churnwatch worker with {', '.join(f'`{k}={x}`' for k, x in v['settings'].items())} (not a target row) | "
        f"{v['events_per_s']:,.0f} | {fmt_n(v.get('events_per_cpu_s'))} | {fmt_n(v.get('cpu_share_of_a_core'))} | "
        f"{v['window_events']:,} | {fmt_n(v.get('first_commit_s'))} s | {'yes' if v['done'] else 'capped'} | – |"
        for v in tp.get("churnwatch_variants", [])
    ]
    _table(
        L,
        "| consumer | sustained ev/s | ev per CPU-second | CPU (cores) | events measured | start-up to first commit | done | churnwatch / this |",
        "|---|---:|---:|---:|---:|---:|:-:|---:|",
        consumers + variants,
    )
    cw = tp["churnwatch"]
    mt = cw.get("metrics", {})
    if mt.get("batches"):
        _para(
            L,
            f"Worker correctness: committed == end offsets on every partition: {cw['done']}; `churnwatch_events_total` = "
            f"{int(mt.get('events_total') or 0):,} of {tp['events']:,}; dead letters {int(mt.get('deadletters_total') or 0)}. "
            f"{int(mt['batches']):,} batches of {mt.get('mean_batch_events', 0):,.0f} events on average, "
            f"{mt.get('mean_batch_seconds', 0) * 1000:,.0f} ms each inside `ChurnService.process` "
            f"({mt.get('batch_seconds_sum', 0):,.1f} s of the {cw['window_s']:,.1f} s window+start).",
        )


def _md_service_path(res: dict, L: list[str]) -> None:
    """The worker's costs per event in process (the end of section 3)."""
    sp = res["service_path"]
    _para(
        L,
        "What the worker does per event in process, without Kafka or Faust (`bench_service_path`: engine, then the "
        "snapshots of the touched subscribers and one RocksDB WriteBatch of them per batch; the worker writes its store "
        "at most every `CHURNWATCH_STORE_FLUSH_S`, coalesced, so the RocksDB column is an upper bound; the changelog "
        "sends are not in it), CPU µs per event:",
    )
    _para(L, f"Snapshots taken with {next(iter(sp.values())).get('snapshot_method', 'Engine.snapshot per row')}.")
    _table(
        L,
        "| batch | engine (decode+apply) | snapshot | RocksDB put | state writes per event | bytes per write | in-process ceiling ev/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        (
            f"| {int(b):,} | {r['engine_us_per_event']:.1f} | {r['snapshot_us_per_event']:.1f} | {r['rocksdb_put_us_per_event']:.1f} | "
            f"{r['state_writes_per_event']:.2f} | {r['snapshot_bytes']:,.0f} | {r['in_process_events_per_s']:,.0f} |"
            for b, r in sp.items()
        ),
    )


def _md_latency(res: dict, L: list[str]) -> None:
    """Section 4: latency."""
    lat = res["e2e"]["latency"]
    _heading(L, "4. Latency (produce → alarm on the alarm topic)")
    if lat.get("p99_s") is not None:
        text = (
            f"At {lat['achieved_rate']:,.0f} ev/s (target {lat['target_rate']:,.0f}: half the measured maximum) for {lat.get('warm_s', 0):.0f} s"
            f" of warm-up (no dial: the broker's JIT compiles the traffic's paths then; `bench.e2e.latency`) and {lat['duration_s']:.0f} s measured, "
            f"1% of the events competitor-hotline dials by {lat['history_subscribers']:,} subscribers with history: "
            f"**p50 {lat['p50_s']:.3f} s, p99 {lat['p99_s']:.3f} s** (max {lat['max_s']:.3f} s) over {lat['alarms_seen']} of {lat['dials']} alarms; "
            f"worker side (alarm `emitted_at` − send time): p50 {fmt_n(lat.get('worker_emit_p50_s'))} s, p99 {fmt_n(lat.get('worker_emit_p99_s'))} s."
        )
        if lat.get("timeline"):
            text += (
                " The worst latency of the dials sent in each tenth of the run, s: "
                + ", ".join("–" if x is None else f"{x:.2f}" for x in lat["timeline"])
                + "."
            )
        q = lat.get("settle")
        if q:
            text += (
                f" Started once the broker had settled after the section before (its CPU below 15% of a core over 2 s:"
                f" waited {q['waited_s']} s; {q['broker_cpu_share']} of a core then)."
            )
        qh = lat.get("settle_after_history")
        if qh and qh.get("broker_cpu_share") is not None:
            text += (
                f" The traffic started once the broker had settled after the history's set-up too (waited"
                f" {qh['waited_s']} s; {qh['broker_cpu_share']} of a core then)."
            )
        fs = lat.get("first_seconds")
        if fs:
            w = fs.get("worker", {})
            text += (
                " In the first 6 s of the traffic (the warm-up), the processes that used the CPU (share of a core): "
                + "; ".join(f"`{b['cmd'][:60]}` {b['cpu_share']}" for b in fs.get("busiest", [])[:4])
                + f". The worker then: {w.get('batches', 0):.0f} batches taking {w.get('batch_seconds_sum', 0):.2f} s,"
                f" {w.get('checkpoints', 0):.0f} checkpoints, day decisions {w.get('sweep_seconds_sum', 0):.2f} s,"
                f" GC pauses {w.get('gc_seconds', 0):.3f} s."
            )
    else:
        text = f"Not measured: {lat.get('error') or 'no alarms seen'}"
    _para(L, text)


def _md_catchup(res: dict, L: list[str]) -> None:
    """Section 5: catch-up."""
    cu = res["e2e"]["catchup"]
    _heading(L, "5. Catch-up (replay of one simulated day, 1 worker)")
    frac = cu.get("fraction_of_day", 0)
    _para(
        L,
        f"Replayed {cu['events']:,} events = {frac * 100:.1f}% of a {cu['day_events']:,}-event day "
        f"({cu['day_events'] // 20:,} subscribers × 20 events) in **{cu['measured_minutes']:.2f} min** "
        f"(sustained {cu['events_per_s']:,.0f} ev/s; first pass creating every subscriber {fmt_n(cu.get('cold_events_per_s'))} ev/s, "
        f"then {fmt_n(cu.get('warm_events_per_s'))} ev/s). "
        + (
            "**The whole day, measured in full.** "
            if frac >= 1.0
            else f"**The whole day would take ~{fmt_n(cu.get('day_minutes_extrapolated'))} min — extrapolated** from the measured rate"
            f"{' after every subscriber had state' if cu.get('warm_events_per_s') else ''}, not measured. "
        )
        + f"Correct (committed == end, every event applied): {cu.get('correct')}.",
    )


def _md_shadow(res: dict, L: list[str]) -> None:
    """Section 6: the second-SIM join's added cost."""
    sh = res["shadow"]
    on, off = sh["on"], sh["off"]
    _heading(
        L,
        f"6. Second-SIM join, added cost per event ({sh['subscribers']:,} simulated subscribers × {sh['days']} days, "
        f"{on['events']:,} events, in process, one core)",
    )
    _table(
        L,
        "| | CPU µs per event | events/s per core |",
        "|---|---:|---:|",
        [
            f"| engine, join off | {sh['base_us_per_event']:.2f} | {off['engine_events_per_s_cpu']:,} |",
            f"| engine, join on (contacts, circle publications, confirmation) | {sh['base_us_per_event'] + sh['added_us_per_event_engine']:.2f} | {on['engine_events_per_s_cpu']:,} |",
            f"| stages 1 + 2 (sketches, bands), run by their own agents in the service | {sh['added_us_per_event_stages']:.2f} | |",
            f"| **added, total** | **{sh['added_us_per_event_total']:.2f}** | (on/off throughput {sh['ratio_on_to_off']:.2f}x) |",
        ],
    )
    _para(
        L,
        f"Records per 1,000 input events: {on['contact_records_per_1k_events']} contacts, {on['band_records_per_1k_events_subscribers']} "
        f"subscriber band entries, {on['band_records_per_1k_events_numbers']} number band entries; the engine agent sends them as "
        f"{on['engine_envelopes_per_1k_events_12_partitions']} messages per 1,000 events (one envelope per partition and batch, 12 partitions). "
        f"{on['competitor_numbers_sketched']:,} competitor numbers sketched ({on['competitor_numbers_sketched'] / max(on['subscribers'], 1):.1f} per subscriber), "
        f"{on['band_keys']:,} band keys, {on['evidence_messages']:,} candidates, {on['shadows_confirmed']} shadows confirmed. "
        "The engine-share difference is within the machine's noise when it comes out negative.",
    )


def render_profiles(res: dict) -> str:
    L = []
    hp = res.get("hotpath") or []
    for h in hp[:1]:
        p = h.get("profile")
        if not p:
            continue
        _para(
            L,
            f"Hot path, cProfile of one extra round ({h['subscribers']:,} subscribers), top functions by own time "
            f"(total {p['total_s']:.2f} s):",
        )
        _table(
            L,
            "| function | own time | cumulative |",
            "|---|---:|---:|",
            (f"| `{r['function']}` | {r['self_pct']}% | {r['cum_pct']}% |" for r in p["by_self"][:14]),
        )
    tp = res.get("e2e", {}).get("throughput", {}).get("churnwatch", {})
    for label, prof in (
        ("throughput run", tp.get("profile")),
        ("catch-up run (1M subscribers)", res.get("e2e", {}).get("catchup", {}).get("profile")),
    ):
        if not prof or not prof.get("samples"):
            continue
        _para(
            L,
            f"Worker, py-spy ({label}, {prof['samples']} samples over all threads). Where the time goes "
            f"(each sample counted once, in the first matching category, `bench.e2e.CATEGORIES`):",
        )
        _table(
            L,
            "| category | share of samples |",
            "|---|---:|",
            (f"| {b['category']} | {b['pct']}% |" for b in prof.get("breakdown", [])),
        )
        _para(L, "Top functions, inclusive and own time:")
        inc = prof.get("by_inclusive", [])[:16]
        slf = prof.get("by_self", [])[:16]
        blank = {"function": "", "pct": ""}
        _table(
            L,
            "| function | inclusive | | function (own time) | self |",
            "|---|---:|---|---|---:|",
            (
                f"| `{a['function']}` | {a['pct']}% | | `{b['function']}` | {b['pct']}% |"
                for a, b in itertools.zip_longest(inc, slf, fillvalue=blank)
            ),
        )
    return "\n".join(L)


def update_readme(res: dict) -> None:
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    body = render_markdown(res) + "\n\n#### Profiles\n\n" + render_profiles(res)
    text = README.read_text() if README.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    pre, rest = text.split(begin, 1)
    _, post = rest.split(end, 1)
    README.write_text(pre + begin + "\n" + body + "\n" + end + post)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="tiny inputs, < 90 s: checks that every benchmark runs (CI smoke test)"
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the results JSON (default bench/results)")
    p.add_argument(
        "--only", choices=["hotpath", "sweep", "e2e", "shadow"], action="append", help="run only these sections"
    )
    p.add_argument(
        "--readme",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="regenerate bench/README.md's results section (default: in full mode with every section)",
    )
    p.add_argument(
        "--catchup-events",
        type=int,
        metavar="N",
        help="events of the catch-up replay (item 5); 20000000 = a whole 1M-subscriber day, measured in full (~15 min)",
    )
    args = p.parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = {**MODES[mode]}
    if args.catchup_events:
        cfg["catchup"] = {**cfg["catchup"], "events": args.catchup_events}
    sections = args.only or ["hotpath", "sweep", "e2e", "shadow"]
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.UTC)
    versions = ensure_extras() if "e2e" in sections else {}
    res: dict = {
        "mode": mode,
        "date_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions,
        "sections": sections,
        "targets_goal": TARGETS,
    }
    work = ROOT / "var" / f"bench-{mode}-{started.strftime('%Y%m%dT%H%M%S')}"
    work.mkdir(parents=True, exist_ok=True)
    ok = True
    try:
        if "hotpath" in sections:
            res["hotpath"] = run_hotpath(cfg)
            from .hotpath import bench_service_path

            log("[1b] the worker's in-process share per batch, stage by stage")
            res["service_path"] = {
                str(b): bench_service_path(cfg["service"]["subs"], cfg["service"]["events"], batch_size=b, log=log)
                for b in (2000, 10_000)
            }
        if "sweep" in sections:
            res["sweep"] = run_sweep(cfg)
        if "shadow" in sections:
            from .shadow import bench_shadow

            log("[6] the second-SIM join's added cost per event (in process, join off vs on)")
            res["shadow"] = bench_shadow(cfg["shadow"]["subs"], cfg["shadow"]["days"], log=log)
        if "e2e" in sections:
            res["e2e"] = run_e2e(cfg, work)
            tp = res["e2e"]["throughput"]
            errors = {k: tp[k]["error"] for k in ("churnwatch", "bare", "faust", "quix") if tp.get(k, {}).get("error")}
            if (
                errors
                or not tp["churnwatch"].get("correct")
                or not res["e2e"]["catchup"].get("correct")
                or not res["e2e"]["latency"].get("alarms_seen")
            ):
                ok = False
                res["errors"] = errors or {"churnwatch": "incorrect run (see results)"}
                log(f"!! errors: {json.dumps(res['errors'])[:2000]}")
    finally:
        res["duration_s"] = time.perf_counter() - t0
        res["machine"]["loadavg_at_end"] = os.getloadavg()
        res["targets"] = evaluate_targets(res)
        res["ok"] = ok
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{mode}.json"
        data = json.dumps(res, indent=1, default=str)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(data)
        tmp.replace(path)
        if mode == "full":
            (args.out / f"{mode}-{started.strftime('%Y%m%dT%H%M%SZ')}.json").write_text(data)
        log(f"results: {path} ({res['duration_s']:.0f} s)")
        write_readme = args.readme if args.readme is not None else (mode == "full" and not args.only)
        if write_readme:
            update_readme(res)
            log(f"README: {README}")
        shutil.rmtree(work, ignore_errors=True) if ok and mode == "quick" else None
    for t in res["targets"]:
        if t["met"] is not None:
            log(
                f"  {'MET ' if t['met'] else 'MISS'} {t['target']}: {fmt_n(t['value'], t.get('unit', ''))} (goal {fmt_n(t['goal'], t.get('unit', ''))})"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
