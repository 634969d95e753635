"""``churnwatch demo``: the whole service on one machine, live.

1. starts the local Kafka broker (``stream.dev.kafka``), unless ``KAFKA_BOOTSTRAP_SERVERS`` is set;
2. starts one worker (``churnwatch worker``) as a child process;
3. streams a simulated operator (``stream.tools.simulate``) into the input topics at ``--rate``;
4. prints alarms as they arrive on the alarm topic, and where to see the metrics and the
   ``/subscribers/{msisdn}`` query.

Ctrl-C stops everything cleanly: the simulator, then the worker (SIGTERM), then the broker it
started. Each demo starts fresh on the local broker (its data and the worker state are reset);
``--keep`` brings the previous demo back up without new traffic, to inspect it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from ..contract import mask_msisdn

__all__ = ["add_arguments", "run"]

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subscribers", type=int, default=3000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rate", type=float, default=30000.0, help="events per second into Kafka (0 = as fast as possible)")
    p.add_argument("--web-port", type=int, default=int(os.environ.get("CHURNWATCH_WEB_PORT", "6066")))
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the previous demo's broker data and worker state and stream nothing: inspect it "
        "(by default each demo starts fresh, since streaming the same population again would count it twice)",
    )
    p.add_argument("--fresh", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts


def _say(msg: str) -> None:
    try:
        print(f"[demo] {msg}", flush=True)
    except OSError:  # stdout gone (e.g. a pipe closed by Ctrl-C): keep shutting down cleanly
        pass


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with code {proc.returncode}; see var/demo/worker.log")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"worker web server did not answer at {url}")


def _scrape(web: str) -> dict:
    """The worker's own figures for the progress line: events applied, input lag (messages),
    alarms sent, and the event time decisions have reached (from /healthz)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {"events": 0.0, "lag": 0.0, "alarms": 0.0, "event_time": None, "status": "?"}
    with urllib.request.urlopen(f"{web}/metrics", timeout=2) as r:
        body = r.read().decode()
    for fam in text_string_to_metric_families(body):
        for smp in fam.samples:
            if smp.name == "churnwatch_events_total":
                out["events"] += smp.value
            elif smp.name == "churnwatch_consumer_lag":
                out["lag"] += smp.value
            elif smp.name == "churnwatch_alarms_total":
                out["alarms"] += smp.value
    try:
        with urllib.request.urlopen(f"{web}/healthz", timeout=2) as r:
            health = orjson.loads(r.read())
    except urllib.error.HTTPError as e:  # 503: stalled (the body says which partitions)
        health = orjson.loads(e.read())
    # the event time decisions follow (never decreasing); complete_time, the slowest partition with
    # a backlog, steps back whenever new traffic gives a partition a backlog again
    out["event_time"] = health.get("event_time") or health.get("complete_time")
    out["status"] = health.get("status", "?")
    return out


def _progress(web: str, stop: threading.Event, every_s: float = 5.0) -> None:
    """One line every ``every_s``: events/s applied by the worker, its input lag, the event-time
    day it has reached, alarms so far, and its health. A thread of its own, so that the traffic
    producer keeping the demo's event loop busy never delays it."""
    last_n, last_t = None, time.monotonic()
    while not stop.wait(every_s):
        try:
            p = _scrape(web)
        except (OSError, ValueError) as exc:
            _say(f"progress: worker not answering ({exc.__class__.__name__})")
            continue
        now = time.monotonic()
        rate = 0.0 if last_n is None else (p["events"] - last_n) / max(1e-9, now - last_t)
        last_n, last_t = p["events"], now
        day = time.strftime("%Y-%m-%d", time.gmtime(p["event_time"] + 8 * 3600)) if p["event_time"] else "-"
        _say(
            f"{time.strftime('%H:%M:%S')} progress: {p['events']:,.0f} events applied ({rate:,.0f}/s), lag {p['lag']:,.0f} messages, "
            f"event time {day}, {p['alarms']:,.0f} alarm records, health {p['status']}"
        )


async def _tail_alarms(settings, stop: asyncio.Event, web: str) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.topic_alarms, **settings.kafka_client_kwargs(), group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    shown = 0
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    a = orjson.loads(m.value)
                    shown += 1
                    day = time.strftime("%Y-%m-%d", time.gmtime(a["event_time"] + 8 * 3600))
                    sigs = ",".join(
                        s["name"] + (f"({s['detail']['shadow_peer']})" if "shadow_peer" in s.get("detail", {}) else "")
                        for s in a["signals"]
                    )
                    try:
                        print(
                            f"  ALARM {day} {mask_msisdn(a['msisdn']):>15} {a['phase']:<9} tier={a['value_tier']:<4} score={a['score']:.2f} reason={a['reason']:<17} {sigs}",
                            flush=True,
                        )
                    except OSError:
                        stop.set()
                    if shown == 1:
                        _say(f"ask about that subscriber: curl {web}/subscribers/{a['msisdn']}")
    finally:
        await consumer.stop()


async def _run(args, settings, env) -> int:
    from .simulate import generate, produce_to_kafka

    web = f"http://{settings.web_host}:{args.web_port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    _say(f"metrics: {web}/metrics   subscriber query: {web}/subscribers/<msisdn>")
    tail = asyncio.create_task(_tail_alarms(settings, stop, web))
    progress_stop = threading.Event()
    threading.Thread(target=_progress, args=(web, progress_stop, 4.0), name="demo-progress", daemon=True).start()
    if getattr(args, "keep", False):
        _say("--keep: the previous demo's state, no new traffic; Ctrl-C to stop")
        await stop.wait()
        progress_stop.set()
        await asyncio.gather(tail, return_exceptions=True)
        return 0
    events, truth = generate(args.subscribers, args.days, args.seed, fmt="records")
    _say(
        f"streaming {args.subscribers} simulated subscribers over {args.days} days at {args.rate:,.0f} events/s; Ctrl-C stops"
    )
    produce = asyncio.create_task(produce_to_kafka(events, settings, rate=args.rate, progress=False, stop_event=stop))
    done, _ = await asyncio.wait({produce, tail}, return_when=asyncio.FIRST_COMPLETED)
    if produce in done and not stop.is_set():
        _say(f"all {produce.result():,} events sent; alarms keep arriving as the worker catches up. Ctrl-C to stop.")
        await stop.wait()
    stop.set()
    progress_stop.set()
    await asyncio.gather(produce, tail, return_exceptions=True)
    return 0


def run(args: argparse.Namespace) -> int:
    from ..dev.kafka import DEFAULT_PORT, LocalKafka
    from ..settings import Settings

    var = ROOT / "var" / "demo"
    kafka = None
    env = dict(os.environ)
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        kafka = LocalKafka(port=DEFAULT_PORT)
        if not args.keep:
            kafka.reset()
        from ..dev.kafka import KAFKA_VERSION, jars_present

        if jars_present():
            _say("starting the local Kafka broker...")
        else:
            _say(
                f"starting the local Kafka broker (downloading Kafka {KAFKA_VERSION} from Maven Central first, about a minute)..."
            )
        env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.start()
    if not args.keep:
        import shutil

        shutil.rmtree(var / "worker", ignore_errors=True)
    var.mkdir(parents=True, exist_ok=True)
    env.setdefault("CHURNWATCH_DATA_DIR", str(var / "worker"))
    env["CHURNWATCH_WEB_PORT"] = str(args.web_port)
    settings = Settings.from_env(env)
    log = open(var / "worker.log", "ab" if args.keep else "wb")  # a fresh demo starts a fresh log
    _say(f"starting a worker (log: {var / 'worker.log'})...")
    worker = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://{settings.web_host}:{args.web_port}/healthz", 120, worker)
        _say("worker ready")
        return asyncio.run(_run(args, settings, env))
    except KeyboardInterrupt:
        return 0
    finally:
        _say("stopping the worker...")
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if kafka is not None:
            _say("stopping the broker...")
            kafka.stop()
        _say("stopped.")
