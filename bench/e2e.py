"""End to end on a real local Kafka broker: throughput, peers, latency, catch-up.

Everything runs against one broker (``stream.dev.kafka.LocalKafka`` on its own port, reset first,
stopped at the end; or ``KAFKA_BOOTSTRAP_SERVERS`` when set), with fresh topic and group names per
run (12 partitions), input pre-produced before any consumer starts.

Measurement of every consumer (the churnwatch worker and each peer) is the same: start it as a
separate process, poll the group's committed offsets (aiokafka admin ``list_consumer_group_offsets``)
every 0.25 s, and compute

* ``events_per_s`` — sustained rate: committed events between the first poll at >= 5% of the input
  and the last poll (at the end, or at the time cap for slow peers), divided by that time;
* ``elapsed_s`` — from process start to committed == end offsets (start-up included);
* ``done`` — whether committed offsets reached the end offsets of every partition.

The churnwatch worker must always finish; the correctness check is committed == end offsets on
every input partition and ``churnwatch_events_total`` == events produced (no rejects).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from .events import MSISDN0, T0, hotline_event, key_of, key_partition, kind_of, make_events

__all__ = ["Broker", "produce_fast", "Consumer", "run_consumer", "ROOT"]

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PARTITIONS = 12
DAY = 86400


# ----------------------------------------------------------------------------- broker
class Broker:
    """The local broker for the run (or ``KAFKA_BOOTSTRAP_SERVERS``)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.kafka = None
        self.bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or ""
        self.external = bool(self.bootstrap)

    def __enter__(self) -> Broker:
        if not self.external:
            from stream.dev.kafka import LocalKafka

            self.kafka = LocalKafka(port=self.port)
            self.kafka.reset()
            self.bootstrap = self.kafka.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.kafka is not None:
            self.kafka.reset()  # stop and delete this run's data

    def pid(self) -> int | None:
        return self.kafka.pid() if self.kafka is not None else None


def all_cpu_seconds() -> dict[int, tuple[str, float]]:
    """Every process's (name, user + system CPU seconds so far), from /proc."""
    out = {}
    tck = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                raw = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        name, rest = raw.split(" (", 1)[1].rsplit(")", 1)
        fields = rest.split()
        out[int(d)] = ((cmd or name)[:80], (int(fields[11]) + int(fields[12])) / tck)
    return out


def busiest(before: dict, after: dict, seconds: float, top: int = 5) -> list[dict]:
    """The processes that used the most CPU between two :func:`all_cpu_seconds`, as shares of a core."""
    used = [(after[p][1] - before.get(p, ("", 0.0))[1], after[p][0]) for p in after]
    return [{"cmd": c, "cpu_share": round(u / seconds, 3)} for u, c in sorted(used, reverse=True)[:top] if u > 0]


def proc_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None: not known)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


async def settle(pid: int | None, below: float = 0.15, window_s: float = 2.0, max_wait_s: float = 60.0) -> dict:
    """Wait until the broker process ``pid`` uses less than ``below`` of a core over ``window_s``
    (at most ``max_wait_s``): a section that follows another on the same broker and 2 cores starts
    once the broker is done with the previous one's work (its consumers' changelogs, compaction),
    which is not the worker's latency. Returns the wait and the broker's last window's share."""
    if pid is None:  # an external broker: nothing to watch
        return {"waited_s": 0.0, "broker_cpu_share": None}
    t0 = time.monotonic()
    while True:
        c0 = proc_cpu_seconds(pid)
        await asyncio.sleep(window_s)
        c1 = proc_cpu_seconds(pid)
        if c0 is None or c1 is None:
            return {"waited_s": round(time.monotonic() - t0, 1), "broker_cpu_share": None}
        share = (c1 - c0) / window_s
        if share < below or time.monotonic() - t0 >= max_wait_s:
            return {"waited_s": round(time.monotonic() - t0, 1), "broker_cpu_share": round(share, 3)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _topic(name: str) -> property:
    return property(lambda self: f"bench.{self.tag}.{name}", doc=f"``bench.<tag>.{name}``")


@dataclass
class TopicSet:
    """One run's topic names (fresh per run)."""

    tag: str

    calls = _topic("calls")
    sms = _topic("sms")
    recharges = _topic("recharges")
    profiles = _topic("profiles")
    alarms = _topic("alarms")
    deadletter = _topic("deadletter")

    @property
    def inputs(self) -> list[str]:
        return [self.calls, self.sms, self.recharges, self.profiles]

    @property
    def by_kind(self) -> list[str]:
        return [self.calls, self.sms, self.recharges]


async def create_topics(bootstrap: str, names: list[str], partitions: int = PARTITIONS) -> None:
    from stream.service.topics import ensure_topics_async
    from stream.settings import Settings

    await ensure_topics_async(
        Settings(bootstrap_servers=bootstrap, partitions=partitions), replication_factor=None, topics=names
    )


# ----------------------------------------------------------------------------- producing
async def produce_fast(bootstrap: str, topics: TopicSet, values: list[bytes], partitions: int = PARTITIONS) -> dict:
    """Produce pre-encoded events, keyed by msisdn, to the topic of their type, in the partition
    Kafka's default partitioner picks for the key (so they are co-partitioned as with any client).
    Uses aiokafka's batch API (one BatchBuilder per partition), order kept within each partition."""
    from aiokafka import AIOKafkaProducer

    names = topics.by_kind
    part_of: dict[bytes, int] = {}
    groups: dict[tuple[int, int], list[tuple[bytes, bytes]]] = collections.defaultdict(list)
    for v in values:
        k = key_of(v)
        p = part_of.get(k)
        if p is None:
            p = part_of[k] = key_partition(k, partitions)
        groups[(kind_of(v), p)].append((k, v))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=5,
        max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
        enable_idempotence=False,
    )
    await producer.start()
    t0 = time.perf_counter()
    try:
        futs = []
        for (kind, p), msgs in groups.items():
            futs += await send_in_batches(producer, names[kind], p, msgs)
            if len(futs) > 64:
                await asyncio.gather(*futs)
                futs.clear()
        await asyncio.gather(*futs)
        await producer.flush()
    finally:
        await producer.stop()
    dt = time.perf_counter() - t0
    return {"events": len(values), "seconds": dt, "events_per_s": len(values) / dt if dt else 0.0}


async def send_in_batches(producer, topic: str, partition: int, kvs) -> list:
    """``kvs`` ((key, value) pairs) to one partition as aiokafka producer batches, in order; the
    batches' send futures."""
    futs = []
    batch = producer.create_batch()
    for k, v in kvs:
        if batch.append(key=k, value=v, timestamp=None) is None:
            batch.close()
            futs.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            batch.append(key=k, value=v, timestamp=None)
    batch.close()
    futs.append(await producer.send_batch(batch, topic, partition=partition))
    return futs


async def end_offsets(bootstrap: str, names: list[str], partitions: int = PARTITIONS) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await c.start()
    try:
        end = await c.end_offsets([TopicPartition(t, p) for t in names for p in range(partitions)])
    finally:
        await c.stop()
    return {(tp.topic, tp.partition): off for tp, off in end.items()}


# ----------------------------------------------------------------------------- processes
class Consumer:
    """A consumer under test: a child process with a log file."""

    live: set = set()  # started and not yet stopped (``stop_all`` on the way out)

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        group: str,
        log_dir: Path,
        web_port: int | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.argv = argv
        self.env = env
        self.group = group
        self.web_port = web_port
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> Consumer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        Consumer.live.add(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def metric(self, name: str) -> float | None:
        if not self.web_port:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as r:
                body = r.read().decode()
        except OSError:
            return None
        total = 0.0
        found = False
        for line in body.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
                found = True
        return total if found else None

    def rss(self) -> tuple[int, int]:
        from .hotpath import peak_rss_bytes, rss_bytes

        try:
            return rss_bytes(self.pid), peak_rss_bytes(self.pid)
        except OSError:
            return 0, 0

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process (all its threads) so far."""
        return proc_cpu_seconds(self.pid) or 0.0

    def metrics_text(self) -> str:
        if not self.web_port:
            return ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""

    @classmethod
    def stop_all(cls) -> None:
        for c in list(cls.live):
            c.stop(timeout_s=10.0)

    def stop(self, timeout_s: float = 30.0) -> None:
        Consumer.live.discard(self)
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_") and not k.startswith("BENCH_")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def churnwatch_consumer(
    bootstrap: str, topics: TopicSet, app_id: str, data_dir: Path, log_dir: Path, **extra: str
) -> Consumer:
    port = free_port()
    env = base_env()
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CHURNWATCH_APP_ID": app_id,
            "CHURNWATCH_TOPIC_CALLS": topics.calls,
            "CHURNWATCH_TOPIC_SMS": topics.sms,
            "CHURNWATCH_TOPIC_RECHARGES": topics.recharges,
            "CHURNWATCH_TOPIC_PROFILES": topics.profiles,
            "CHURNWATCH_TOPIC_ALARMS": topics.alarms,
            "CHURNWATCH_TOPIC_DEADLETTER": topics.deadletter,
            "CHURNWATCH_PARTITIONS": str(PARTITIONS),
            "CHURNWATCH_DATA_DIR": str(data_dir),
            "CHURNWATCH_WEB_PORT": str(port),
            # (CHURNWATCH_BENCH_LOG_LEVEL=info: the worker's rebalances and recoveries in its log)
            "CHURNWATCH_LOG_LEVEL": os.environ.get("CHURNWATCH_BENCH_LOG_LEVEL", "warn"),
        }
    )
    env.update(extra)
    code = Path(extra.get("_code") or ROOT)  # another checkout's code (an A/B of two revisions in one run)
    env["PYTHONPATH"] = str(code) + env["PYTHONPATH"].removeprefix(str(ROOT))
    return Consumer(
        "churnwatch" + ("-" + extra.get("_suffix", "") if extra.get("_suffix") else ""),
        [PY, "-m", "stream.cli", "worker"],
        {k: v for k, v in env.items() if not k.startswith("_")},
        app_id,
        log_dir,
        web_port=port,
        cwd=code,
    )


def peer_consumer(kind: str, bootstrap: str, topics: TopicSet, group: str, data_dir: Path, log_dir: Path) -> Consumer:
    env = base_env()
    port = free_port()
    env.update(
        {
            "BENCH_BOOTSTRAP": bootstrap,
            "BENCH_GROUP": group,
            "BENCH_TOPICS": ",".join(topics.by_kind),
            "BENCH_PARTITIONS": str(PARTITIONS),
            "BENCH_DATA_DIR": str(data_dir),
            "BENCH_WEB_PORT": str(port),
        }
    )
    module = {
        "bare": "bench.peers.bare_consumer",
        "faust": "bench.peers.faust_windowed",
        "quix": "bench.peers.quix_app",
    }[kind]
    argv = [PY, "-m", module]
    if kind == "faust":
        argv += ["worker", "-l", "warn"]
    return Consumer(kind, argv, env, group, log_dir)


async def _committed_sum(admin, group: str, want: dict) -> int:
    got = await admin.list_consumer_group_offsets(group)
    total = 0
    for tp, meta in got.items():
        key = (tp.topic, tp.partition)
        if key in want and meta is not None and meta.offset > 0:
            total += min(meta.offset, want[key])
    return total


async def run_consumer(
    c: Consumer,
    bootstrap: str,
    end: dict,
    cap_s: float,
    startup_timeout_s: float = 120.0,
    on_progress=None,
    poll_s: float = 0.25,
) -> dict:
    """Start ``c``, poll its committed offsets until they reach ``end`` (or ``cap_s`` after the first
    commit), then stop it. Returns the measurement (see the module docstring)."""
    from aiokafka.admin import AIOKafkaAdminClient

    total = sum(end.values())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    series: list[tuple[float, int, float]] = []
    c.start()
    t_start = time.monotonic()
    first_commit = None
    done = False
    error = None
    try:
        while True:
            now = time.monotonic()
            if not c.alive():
                error = f"{c.name} exited with {c.proc.returncode}: {c.log_tail()}"
                break
            try:
                n = await _committed_sum(admin, c.group, end)
            except Exception as exc:  # noqa: BLE001 - coordinator not ready yet
                n = series[-1][1] if series else 0
                logger.debug("committed offsets: %r", exc)
            series.append((now - t_start, n, c.cpu_seconds()))
            if on_progress is not None:
                await on_progress(c, now - t_start, n)
            if n > 0 and first_commit is None:
                first_commit = now
            if n >= total:
                done = True
                break
            if first_commit is None and now - t_start > startup_timeout_s:
                error = f"{c.name}: no commit within {startup_timeout_s:.0f}s: {c.log_tail()}"
                break
            if first_commit is not None and now - first_commit > cap_s:
                break
            await asyncio.sleep(poll_s)
    finally:
        rss = c.rss()
        cpu = c.cpu_seconds()
        await admin.close()
        if error is not None:
            c.stop()
    res = _rate(series, total)
    res.update(
        {
            "name": c.name,
            "done": done,
            "error": error,
            "events": total,
            "committed": series[-1][1] if series else 0,
            "rss_bytes": rss[0],
            "peak_rss_bytes": rss[1],
            "cpu_s": cpu,
            "log": str(c.log_path.relative_to(ROOT)) if c.log_path.is_relative_to(ROOT) else str(c.log_path),
        }
    )
    return res


def _rate(series: list[tuple[float, int, float]], total: int) -> dict:
    """Sustained rate between the first poll at >= 5% of the input and the first poll that saw the
    final committed count; CPU seconds of the consumer process over the same window."""
    if not series or series[-1][1] == 0:
        return {
            "events_per_s": 0.0,
            "elapsed_s": None,
            "window_s": 0.0,
            "window_events": 0,
            "first_commit_s": None,
            "events_per_cpu_s": None,
        }
    lo = max(1, int(0.05 * total))
    start = next((p for p in series if p[1] >= lo), series[-1])
    last_n = series[-1][1]
    end_pt = next(p for p in series if p[1] == last_n)
    window = end_pt[0] - start[0]
    ev = end_pt[1] - start[1]
    cpu = end_pt[2] - start[2]
    first = next(p[0] for p in series if p[1] > 0)
    if window <= 0 or ev <= 0:  # everything committed in one step: the whole run
        window, ev, cpu = max(end_pt[0], 1e-9), end_pt[1], end_pt[2]
    return {
        "events_per_s": ev / window,
        "elapsed_s": end_pt[0] if last_n >= total else None,
        "window_s": window,
        "window_events": ev,
        "first_commit_s": first,
        "window_cpu_s": cpu,
        "events_per_cpu_s": ev / cpu if cpu > 0 else None,
        "cpu_share_of_a_core": cpu / window if window > 0 else None,
    }


# ----------------------------------------------------------------------------- py-spy
def pyspy_available() -> str | None:
    exe = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    return exe if os.path.exists(exe) else None


def pyspy_start(pid: int, out: Path, duration_s: int, rate: int = 50) -> subprocess.Popen | None:
    exe = pyspy_available()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(duration_s),
            "--rate",
            str(rate),
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# Where the worker's time goes: each sample goes to the first category whose marker appears in
# its stack (markers are matched against "function (file)" frames).
CATEGORIES = [
    ("state: snapshots of touched subscribers", ("Engine.snapshot", "snapshot_many")),
    ("state: RocksDB write via Faust's store", ("SerializedStore.__setitem__", "Store._set")),
    (
        "sends: changelog/alarm messages handed to the producer",
        (
            "Producer.send",
            "AIOKafkaProducer.send",
            "_send_batches",
            "send_batch",
            "create_batch",
            "BatchBuilder.append",
        ),
    ),
    ("engine: decode", ("Engine.decode",)),
    ("engine: apply", ("Engine.apply",)),
    ("engine: day decisions", ("Engine.decide", "Engine.evaluate", "Engine.sweep")),
    ("service: rest of ChurnService.process (bookkeeping, metrics, awaiting acks)", ("ChurnService.process",)),
    (
        "Kafka producer I/O (aiokafka sender, batching, CRC)",
        ("Sender.", "_sender_routine", "MessageAccumulator", "BatchBuilder", "aiokafka/producer/"),
    ),
    (
        "Faust + aiokafka consumer: per-event pipeline (fetch, Event objects, stream, acks)",
        (
            "Consumer._drain_messages",
            "Fetcher.",
            "Conductor",
            "on_message",
            "Stream.",
            "take_events",
            "aiokafka/consumer/",
            "faust/transport/consumer",
            "App.create_event",
            "faust/serializers",
            "TopicBuffer",
            "FlowControlQueue",
            "Service.wait_first",
            "mode/utils",
        ),
    ),
    ("offset commits", ("commit",)),
    ("waiting for I/O (select)", ("EpollSelector.select",)),
    (
        "asyncio scheduling (a future and callbacks per message)",
        ("Handle._run", "BaseEventLoop._run_once", "asyncio/tasks.py", "asyncio/locks.py", "asyncio/queues.py"),
    ),
    ("event loop / other", ("",)),
]


_GENERIC_FRAMES = (
    "<module>",
    "run_forever",
    "run_until_complete",
    "_run_once",
    "execute_from_commandline",
    "_run_code",
    "_run_module_as_main",
    "Handle._run",
    "Thread._bootstrap",
    "main (",
    "run (",
)


def categorize(stack: list[str]) -> str:
    for name, markers in CATEGORIES:
        for m in markers:
            if any(m in f for f in stack):
                return name
    return "event loop / other"


def summarize_collapsed(path: Path, limit: int = 15) -> dict:
    """Self and inclusive shares by function from py-spy's collapsed stacks (``--format raw``)."""
    self_c: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    cats: collections.Counter = collections.Counter()
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"samples": 0}
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        self_c[frames[-1]] += n
        cats[categorize(frames)] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return {"samples": 0}
    pct = lambda c: round(100.0 * c / total, 1)  # noqa: E731
    return {
        "samples": total,
        "breakdown": [{"category": c, "pct": pct(cats.get(c, 0))} for c, _ in CATEGORIES if cats.get(c)],
        "by_self": [{"function": f, "pct": pct(c)} for f, c in self_c.most_common(limit)],
        "by_inclusive": [
            {"function": f, "pct": pct(c)}
            for f, c in incl.most_common(limit * 4)
            if not any(x in f for x in _GENERIC_FRAMES)
        ][: limit * 2],
    }


def _short(frame: str) -> str:
    # "process (stream/service/churn.py:170)" or "process (/abs/path/stream/service/churn.py:170)"
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    path, _, line = loc.rpartition(":")
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def _f(x) -> str:
    return "-" if x is None else (f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}")


def worker_metrics(c: Consumer) -> dict:
    """The worker's own counters (Prometheus text from /metrics)."""
    text = c.metrics_text()
    want = {
        "churnwatch_events_total": "events_total",
        "churnwatch_deadletters_total": "deadletters_total",
        "churnwatch_batch_seconds_sum": "batch_seconds_sum",
        "churnwatch_batch_seconds_count": "batches",
        "churnwatch_batch_size_sum": "batch_events_sum",
        "churnwatch_sweeps_total": "sweeps",
        "churnwatch_sweep_seconds_sum": "sweep_seconds_sum",
        "churnwatch_subscribers": "subscribers",
        "churnwatch_alarms_total": "alarms_total",
        "churnwatch_checkpoints_total": "checkpoints",
        "churnwatch_checkpoint_seconds_sum": "checkpoint_seconds_sum",
        "churnwatch_checkpoint_wait_seconds_total": "checkpoint_wait_seconds",
        "churnwatch_gc_seconds_total": "gc_seconds",
    }
    out: dict = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else line.partition(" ")
        key = want.get(name)
        if key is None:
            continue
        if key == "gc_seconds":  # also by generation: which collections cost
            gen = rest.partition('generation="')[2].partition('"')[0]
            try:
                out[f"gc_seconds_gen{gen}"] = float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
        try:
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
        except ValueError:
            pass
    if out.get("batches"):
        out["mean_batch_events"] = out.get("batch_events_sum", 0) / out["batches"]
        out["mean_batch_seconds"] = out.get("batch_seconds_sum", 0) / out["batches"]
    return out


# ----------------------------------------------------------------------------- scenarios
def _tag() -> str:
    return uuid.uuid4().hex[:8]


async def warm_up(bootstrap: str, topics: TopicSet, end: dict, work: Path) -> float:
    """A read of the whole input by the bare consumer, not measured (its rate is returned): the
    first consumer of freshly produced input was otherwise the slowest (in 3 of 4 invocations the
    worker measured first did 30-34k events/s and 32-38k per CPU-second; the same worker run after
    it, 44-60k and 49-67k), not because of the broker's CPU (it was idle then)."""
    warm = peer_consumer(
        "bare", bootstrap, topics, f"bench-warm-{topics.tag}", work / f"warm-{topics.tag}", work / "logs"
    )
    try:
        w = await run_consumer(warm, bootstrap, end, cap_s=300, poll_s=0.1)
    finally:
        warm.stop()
    return w["events_per_s"]


async def throughput(
    bootstrap: str,
    n_subs: int,
    n_events: int,
    cap_s: float,
    work: Path,
    peers: list[str],
    profile_s: int = 0,
    parallel: bool = False,
    variants: list[dict] | None = None,
    log=print,
    broker_pid: int | None = None,
) -> dict:
    """Item 3: the same pre-produced input for the churnwatch worker, the bare consumer and the peers.
    Run one after the other (not ``parallel``): after a warm-up read of the input (``warm_up``:
    the first consumer of freshly produced input was the slowest), and each once the broker has
    settled (``settle``; a guard: the broker was already idle in the runs that showed the
    first-run penalty, which the warm-up removed)."""
    topics = TopicSet(_tag())
    await create_topics(bootstrap, topics.inputs + [topics.alarms, topics.deadletter])
    t = time.perf_counter()
    values = make_events(n_subs, n_events, seed=7, t_start=T0 + DAY, span_s=0.9 * DAY, cover_first=True)
    gen_s = time.perf_counter() - t
    prod = await produce_fast(bootstrap, topics, values)
    mean_bytes = sum(map(len, values)) / max(1, len(values))
    del values
    end = await end_offsets(bootstrap, topics.inputs)
    assert sum(end.values()) == n_events, (sum(end.values()), n_events)
    log(
        f"  produced {n_events:,} events ({n_subs:,} subscribers) in {prod['seconds']:.1f} s (+{gen_s:.1f} s generating)"
    )
    out: dict = {
        "subscribers": n_subs,
        "events": n_events,
        "mean_event_bytes": round(mean_bytes, 1),
        "partitions": PARTITIONS,
        "produce": prod,
        "cap_s": cap_s,
        "topics": topics.tag,
    }

    # churnwatch first (it must finish; the correctness check), then the ceiling and the peers;
    # with parallel=True (quick mode: "does it run", not "how fast") all at once
    cw = churnwatch_consumer(bootstrap, topics, f"bench-cw-{topics.tag}", work / f"cw-{topics.tag}", work / "logs")
    spy = {"proc": None, "out": work / f"pyspy-worker-{topics.tag}.txt"}
    wm: dict = {}

    async def on_cw(c, t_s, n):
        if profile_s and spy["proc"] is None and n >= 0.05 * n_events:
            spy["proc"] = pyspy_start(c.pid, spy["out"], profile_s)
        if n >= n_events and not wm:
            wm.update(worker_metrics(c))

    async def run_cw():
        res = await run_consumer(cw, bootstrap, end, cap_s=max(cap_s, 1800), on_progress=on_cw)
        if not wm:
            wm.update(worker_metrics(cw))
        cw.stop()
        res["metrics"] = dict(wm)
        applied = wm.get("events_total")
        res["applied_events_metric"] = applied
        res["correct"] = bool(res["done"] and applied == n_events and not wm.get("deadletters_total"))
        if spy["proc"] is not None:
            try:
                spy["proc"].wait(profile_s + 30)
            except subprocess.TimeoutExpired:
                spy["proc"].kill()
            res["profile"] = summarize_collapsed(spy["out"])
            res["profile"]["file"] = str(spy["out"])
        out["churnwatch"] = res
        log(
            f"  churnwatch worker: {res['events_per_s']:,.0f} ev/s sustained ({_f(res.get('events_per_cpu_s'))} per CPU s), "
            f"done={res['done']} applied={applied} elapsed={_f(res['elapsed_s'])} s rss={res['rss_bytes'] / 2**20:.0f} MiB"
        )
        if not res["correct"]:
            log(f"  !! churnwatch run not correct: {res.get('error')}\n{cw.log_tail()}")

    async def run_peer(kind):
        c = peer_consumer(
            kind, bootstrap, topics, f"bench-{kind}-{topics.tag}", work / f"{kind}-{topics.tag}", work / "logs"
        )
        try:
            r = await run_consumer(
                c,
                bootstrap,
                end,
                cap_s=cap_s if kind != "bare" else max(cap_s, 300),
                poll_s=0.1 if kind == "bare" else 0.25,
            )
        finally:
            c.stop()
        out[kind] = r
        log(
            f"  {kind}: {r['events_per_s']:,.0f} ev/s sustained over {r['window_events']:,} events "
            f"({r['window_s']:.1f} s; {_f(r.get('events_per_cpu_s'))} per CPU s), done={r['done']}"
            + (f" ERROR {r['error'][:300]}" if r["error"] else "")
        )

    async def run_variant(extra: dict):
        """The worker with other settings (e.g. a larger batch), its own group, same input."""
        runs = out.setdefault("churnwatch_variants", [])  # the same settings twice: a group each
        tag = (
            "-".join(f"{k.removeprefix('CHURNWATCH_').lower()}{Path(v).name}" for k, v in extra.items())
            + f"-{len(runs)}"
        )
        c = churnwatch_consumer(
            bootstrap,
            topics,
            f"bench-cw-{tag}-{topics.tag}",
            work / f"cw-{tag}-{topics.tag}",
            work / "logs",
            _suffix=tag,
            **extra,
        )
        try:
            r = await run_consumer(c, bootstrap, end, cap_s=max(cap_s, 1800))
            r["metrics"] = worker_metrics(c)
        finally:
            c.stop()
        r["settings"] = extra
        r["correct"] = bool(r["done"] and r["metrics"].get("events_total") == n_events)
        out.setdefault("churnwatch_variants", []).append(r)
        log(
            f"  churnwatch worker {extra}: {r['events_per_s']:,.0f} ev/s sustained ({_f(r.get('events_per_cpu_s'))} per CPU s), "
            f"correct={r['correct']}"
        )

    async def settled(name: str) -> None:
        q = await settle(broker_pid)
        out.setdefault("settle", {})[name] = q
        if q["waited_s"] > 2.5:
            log(f"  (the broker settled after {q['waited_s']} s before {name})")

    if parallel:
        await asyncio.gather(run_cw(), *(run_peer(k) for k in ["bare"] + peers))
    else:
        out["warmup_bare_events_per_s"] = await warm_up(bootstrap, topics, end, work)
        await settled("churnwatch")
        await run_cw()
        for extra in variants or []:
            await settled(str(extra))
            await run_variant(extra)
        for kind in ["bare"] + peers:
            await settled(kind)
            await run_peer(kind)
    base = out["churnwatch"]["events_per_s"]
    out["ratios"] = {
        f"vs_{k}": (base / out[k]["events_per_s"] if out[k]["events_per_s"] else None) for k in ["bare"] + peers
    }
    return out


async def first_seconds(cw, report: dict, window: float = 6.0) -> None:
    """Who used the CPU, and what the worker ``cw`` did, in the first ``window`` seconds from now
    (of the latency section's traffic: the slowest alarms of `make bench` came then, not when the
    section runs alone), into ``report``."""
    cpu0, wm0 = all_cpu_seconds(), await asyncio.to_thread(worker_metrics, cw)
    await asyncio.sleep(window)
    cpu, wm = all_cpu_seconds(), await asyncio.to_thread(worker_metrics, cw)
    report["busiest"] = busiest(cpu0, cpu, window)
    report["worker"] = {k: round(v - wm0.get(k, 0.0), 3) for k, v in wm.items() if isinstance(v, float)}


async def _with_history(bootstrap: str, n_hist_subs: int, work: Path):
    """The latency section's set-up: fresh topics, ``n_hist_subs`` subscribers' history produced,
    and a worker that has applied it. Returns (topics, worker, None) or (topics, None, error)."""
    topics = TopicSet(_tag())
    await create_topics(bootstrap, topics.inputs + [topics.alarms, topics.deadletter])
    hist = make_events(n_hist_subs, 2 * n_hist_subs, seed=11, t_start=T0 + DAY, span_s=0.3 * DAY, cover_first=True)
    await produce_fast(bootstrap, topics, hist)
    end = await end_offsets(bootstrap, topics.inputs)
    cw = churnwatch_consumer(bootstrap, topics, f"bench-lat-{topics.tag}", work / f"lat-{topics.tag}", work / "logs")
    try:
        hist_res = await run_consumer(cw, bootstrap, end, cap_s=600)
    except BaseException:
        cw.stop()
        raise
    if not hist_res["done"]:
        cw.stop()
        return topics, None, f"history not consumed: {hist_res.get('error')}"
    return topics, cw, None


async def latency(
    bootstrap: str,
    rate: float,
    duration_s: float,
    n_hist_subs: int,
    work: Path,
    log=print,
    warm_s: float = 10.0,
    broker_pid: int | None = None,
) -> dict:
    """Item 4: produce at a fixed rate for ``warm_s`` + ``duration_s``; 1% of the events after the
    first ``warm_s`` are competitor-hotline dials by subscribers with history, each dialling once;
    latency = alarm seen on the alarm topic - the dial's send time. The traffic starts once the
    broker (``broker_pid``) has settled after the history's set-up (its events, the worker's
    changelog of 20,000 states). The warm-up is the broker's: the traffic's paths are new to its
    JIT, whose threads took 0.4-0.7 of a core in the traffic's first ~10 s (JFR, 2026-12-07); in
    `make bench` of 29acd8c, with 2 s of warm-up, those seconds held the slowest alarms."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topics, cw, error = await _with_history(bootstrap, n_hist_subs, work)
    if error:
        return {"error": error}
    quiet = await settle(broker_pid)
    log(
        f"  latency: worker holds {n_hist_subs:,} subscribers with history; producing at {rate:,.0f} ev/s for {duration_s:.0f} s"
        f" (the broker settled after the history in {quiet['waited_s']} s)"
    )

    n_total = int(rate * (warm_s + duration_s))
    traffic = make_events(n_hist_subs, n_total, seed=12, t_start=T0 + DAY + 0.3 * DAY, span_s=0.2 * DAY)
    part_of: dict[bytes, int] = {}
    sent_at: dict[str, float] = {}
    recv_at: dict[str, float] = {}
    emitted_at: dict[str, float] = {}
    acked_at: dict[str, float] = {}  # the broker acknowledged the dial (the producer's share of the latency)
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="latest"
    )
    await reader.start()
    tps = [TopicPartition(topics.alarms, p) for p in range(PARTITIONS)]
    reader.assign(tps)
    await reader.seek_to_end(*tps)
    for tp in tps:
        await reader.position(tp)
    stop = asyncio.Event()

    async def read():
        import orjson

        while not stop.is_set():
            got = await reader.getmany(timeout_ms=50)
            now = time.time()
            for msgs in got.values():
                for m in msgs:
                    a = orjson.loads(m.value)
                    msisdn = a["msisdn"]
                    if msisdn in sent_at and msisdn not in recv_at:
                        recv_at[msisdn] = now
                        emitted_at[msisdn] = float(a.get("emitted_at") or 0.0)

    reader_task = asyncio.create_task(read())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2, enable_idempotence=False)
    await producer.start()
    names = topics.by_kind
    every = 100  # 1% hotline dials
    # no dial in the warm-up: the broker's JIT (above), and the bench's own producer takes ~1.5 s
    # to reach its pace (its acks alone were 1.5-1.7 s late then, before any worker was involved)
    warm = int(warm_s * rate)
    start_report: dict = {}
    watch = asyncio.create_task(first_seconds(cw, start_report))
    t0 = time.monotonic()
    t_wall0 = time.time()
    tick = 0.01
    sent = 0
    dials = 0
    pending = []
    try:
        while sent < n_total:
            target = min(n_total, int((time.monotonic() - t0) * rate) + 1)
            # this tick's events, one producer batch per (topic, partition): a send per message
            # cost this process most of a core at 28k ev/s, on the 2 cores the worker and the
            # broker share (issue 10's latency is the worker's, not this producer's)
            groups: dict[tuple[int, int], list] = collections.defaultdict(list)
            tick_dials = []
            now = time.time()
            while sent < target:
                v = traffic[sent]
                if sent % every == every // 2 and dials < n_hist_subs and sent >= warm:
                    s = (dials * 7919) % n_hist_subs
                    ts = int(T0 + DAY + 0.3 * DAY + 0.2 * DAY * sent / n_total)
                    v = hotline_event(s, ts, sent_at=now)
                    sent_at[str(MSISDN0 + s)] = now
                    tick_dials.append(str(MSISDN0 + s))
                    dials += 1
                k = key_of(v)
                p = part_of.get(k)
                if p is None:
                    p = part_of[k] = key_partition(k, PARTITIONS)
                groups[(kind_of(v), p)].append((k, v))
                sent += 1
            dial_keys = {m.encode() for m in tick_dials}
            for (kind, p), kvs in groups.items():
                futs = await send_in_batches(producer, names[kind], p, kvs)
                for m in [k.decode() for k, _ in kvs if k in dial_keys]:  # (acked with the group's last batch)
                    futs[-1].add_done_callback(lambda _f, m=m: acked_at.__setitem__(m, time.time()))
                pending += futs
            if len(pending) > 5000:
                pending = [f for f in pending if not f.done()]
            await asyncio.sleep(tick)
        achieved = sent / (time.monotonic() - t0)
        await asyncio.gather(*pending)
        deadline = time.monotonic() + 30
        while len(recv_at) < len(sent_at) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await reader_task
        await reader.stop()
        await producer.stop()
        cw.stop()
    lat = sorted(recv_at[m] - sent_at[m] for m in recv_at)
    lat_w = sorted(emitted_at[m] - sent_at[m] for m in recv_at if emitted_at.get(m))

    def pct(xs, q):
        if not xs:
            return None
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

    return {
        "target_rate": rate,
        "achieved_rate": achieved,
        "duration_s": duration_s,
        "events": sent,
        "dials": len(sent_at),
        "alarms_seen": len(recv_at),
        "history_subscribers": n_hist_subs,
        "p50_s": pct(lat, 0.5),
        "p99_s": pct(lat, 0.99),
        "max_s": lat[-1] if lat else None,
        "worker_emit_p50_s": pct(lat_w, 0.5),
        "worker_emit_p99_s": pct(lat_w, 0.99),
        "warm_s": warm_s,
        "timeline": _timeline(sent_at, recv_at, t_wall0 + warm_s, duration_s),
        "acked_timeline": _timeline(sent_at, acked_at, t_wall0 + warm_s, duration_s),
        "first_seconds": start_report if watch.done() else None,
        "settle_after_history": quiet,
    }


def _timeline(sent_at: dict, recv_at: dict, t_wall0: float, duration_s: float, buckets: int = 10) -> list:
    """The worst latency of the dials sent in each tenth of the run (None: no dial seen): whether
    the slow alarms come at the start, at intervals, or once the worker fell behind."""
    width = duration_s / buckets
    worst: list = [None] * buckets
    for m, t in sent_at.items():
        if m in recv_at:
            i = min(buckets - 1, max(0, int((t - t_wall0) / width)))
            worst[i] = max(worst[i] or 0.0, round(recv_at[m] - t, 3))
    return worst


async def catchup(bootstrap: str, n_subs: int, n_events: int, work: Path, profile_s: int = 0, log=print) -> dict:
    """Item 5: replay (a measured fraction of) one simulated day of ``n_subs`` subscribers. The first
    ``n_subs`` events visit every subscriber once (state for all of them: the worker's RSS is read
    then); the rest is the day's steady traffic. Rates are reported for both parts."""
    topics = TopicSet(_tag())
    await create_topics(bootstrap, topics.inputs + [topics.alarms, topics.deadletter])
    t = time.perf_counter()
    prod = {"events": 0, "seconds": 0.0}
    chunk = 1_000_000
    span = DAY * n_events / (n_subs * 20)  # the fraction of the day these events cover
    for i in range(0, n_events, chunk):  # generate and produce in chunks (bounded memory)
        m = min(chunk, n_events - i)
        vals = make_events(
            n_subs,
            m,
            seed=21 + i,
            t_start=T0 + DAY + span * i / n_events,
            span_s=span * m / n_events,
            cover_first=(i == 0),
        )
        p = await produce_fast(bootstrap, topics, vals)
        prod["events"] += p["events"]
        prod["seconds"] += p["seconds"]
        del vals
    log(f"  catch-up: produced {n_events:,} events of a {n_subs:,}-subscriber day in {time.perf_counter() - t:.1f} s")
    end = await end_offsets(bootstrap, topics.inputs)
    total = sum(end.values())
    cw = churnwatch_consumer(bootstrap, topics, f"bench-cu-{topics.tag}", work / f"cu-{topics.tag}", work / "logs")
    marks: dict = {"rss_at_all_subs": None}
    spy = {"proc": None, "out": work / f"pyspy-catchup-{topics.tag}.txt"}

    async def progress(c, t_s, n):
        # once about every subscriber's first event is committed, ask the worker how many it holds;
        # the moment it holds all of them: its resident memory, and the start of the warm phase
        if marks["rss_at_all_subs"] is None and n >= 0.9 * min(n_subs, total):
            subs = worker_metrics(c).get("subscribers") or 0
            if subs >= min(n_subs, total) or n >= total:
                marks["rss_at_all_subs"] = c.rss()[0]
                marks["t_all_subs"] = t_s
                marks["n_all_subs"] = n
                marks["subscribers_metric"] = subs
                if profile_s and spy["proc"] is None:
                    spy["proc"] = pyspy_start(c.pid, spy["out"], profile_s)

    try:
        res = await run_consumer(cw, bootstrap, end, cap_s=3600, on_progress=progress)
        wm = worker_metrics(cw)
    finally:
        cw.stop()
    applied = wm.get("events_total")
    res.update(marks)
    res["metrics"] = wm
    res["applied_events_metric"] = applied
    res["subscribers_metric_end"] = wm.get("subscribers")
    res["correct"] = bool(res["done"] and applied == total)
    res["produce"] = prod
    res["day_events"] = n_subs * 20
    res["fraction_of_day"] = total / (n_subs * 20)
    # rates before/after every subscriber had state
    if marks.get("t_all_subs") and res.get("elapsed_s"):
        cold_t = marks["t_all_subs"] - (res.get("first_commit_s") or 0.0)
        warm_t = res["elapsed_s"] - marks["t_all_subs"]
        res["cold_events_per_s"] = marks["n_all_subs"] / cold_t if cold_t > 0 else None
        res["warm_events_per_s"] = (
            (total - marks["n_all_subs"]) / warm_t if warm_t > 0 and total > marks["n_all_subs"] else None
        )
    rate = res.get("warm_events_per_s") or res["events_per_s"]
    res["day_minutes_extrapolated"] = (n_subs * 20) / rate / 60 if rate else None
    res["measured_minutes"] = (res["elapsed_s"] or 0) / 60
    if spy["proc"] is not None:
        try:
            spy["proc"].wait(profile_s + 30)
        except subprocess.TimeoutExpired:
            spy["proc"].kill()
        res["profile"] = summarize_collapsed(spy["out"])
    log(
        f"  catch-up: {total:,} events in {res['measured_minutes']:.2f} min (sustained {res['events_per_s']:,.0f} ev/s; "
        f"cold {res.get('cold_events_per_s') or 0:,.0f}, warm {res.get('warm_events_per_s') or 0:,.0f}); "
        f"RSS with all subscribers {((marks.get('rss_at_all_subs') or 0) / 2**20):.0f} MiB; correct={res['correct']}"
    )
    return res


def main(argv=None) -> int:
    """``python -m bench.e2e throughput|latency [...]``: one end-to-end measurement on its own
    broker (port 19895), without the rest of ``bench.run`` (figures quoted in bench/README)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=main.__doc__.split("\n")[0])
    p.add_argument("what", choices=["throughput", "latency", "catchup"])
    p.add_argument("--rate", type=float, default=8000.0, help="latency: events/s produced")
    p.add_argument("--seconds", type=float, default=20.0, help="latency: how long")
    p.add_argument(
        "--warm-s", type=float, default=10.0, help="latency: seconds of traffic before the first dial (0: a cold start)"
    )
    p.add_argument(
        "--subscribers",
        type=int,
        default=None,
        help="throughput 100,000; latency 20,000 (with history); catchup 1,000,000",
    )
    p.add_argument(
        "--events",
        type=int,
        default=None,
        help="events pre-produced: throughput 300,000; catchup 20 per subscriber (a day)",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="S",
        help="throughput: py-spy the worker for S seconds, print where the time goes",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="K=V[,K=V]",
        help="throughput: also run the worker with these CHURNWATCH_* settings, same input (repeatable); "
        "_code=DIR runs another checkout's worker (an A/B of two revisions in one run: git worktree add DIR REV)",
    )
    args = p.parse_args(argv)
    variants = [dict(kv.split("=", 1) for kv in v.split(",")) for v in args.variant]
    for v in variants:  # (a key the worker does not read would run the same worker twice, silently)
        wrong = [k for k in v if not (k.startswith("CHURNWATCH_") or k in ("_code", "_suffix"))]
        if wrong:
            p.error(f"--variant keys are CHURNWATCH_* settings or _code: {', '.join(wrong)}")
    work = ROOT / "var" / f"bench-e2e-{args.what}"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    with Broker(19895) as broker:
        try:
            if args.what == "throughput":
                r = asyncio.run(
                    throughput(
                        broker.bootstrap,
                        args.subscribers or 100_000,
                        args.events or 300_000,
                        60.0,
                        work,
                        [],
                        profile_s=args.profile,
                        variants=variants,
                        broker_pid=broker.pid(),
                    )
                )
                out = {
                    "churnwatch_events_per_s": r["churnwatch"].get("events_per_s"),
                    "churnwatch_metrics": r["churnwatch"].get("metrics"),
                    "churnwatch_cpu_share_of_a_core": r["churnwatch"].get("cpu_share_of_a_core"),
                    "bare_events_per_s": r.get("bare", {}).get("events_per_s"),
                    "variants": [
                        {
                            "settings": v["settings"],
                            "events_per_s": v["events_per_s"],
                            "events_per_cpu_s": v.get("events_per_cpu_s"),
                            "correct": v["correct"],
                            "metrics": v.get("metrics"),
                        }
                        for v in r.get("churnwatch_variants", [])
                    ],
                }
                if r["churnwatch"].get("profile"):
                    out["profile"] = r["churnwatch"]["profile"]
            elif args.what == "catchup":
                subs = args.subscribers or 1_000_000
                r = asyncio.run(catchup(broker.bootstrap, subs, args.events or 20 * subs, work, profile_s=args.profile))
                keys = ("events_per_s", "measured_minutes", "cold_events_per_s", "warm_events_per_s", "correct")
                out = {k: r.get(k) for k in keys} | {"rss_at_all_subs": r.get("rss_at_all_subs")}
                if r.get("profile"):
                    out["profile"] = r["profile"]
            else:
                r = asyncio.run(
                    latency(
                        broker.bootstrap,
                        args.rate,
                        args.seconds,
                        args.subscribers or 20_000,
                        work,
                        warm_s=args.warm_s,
                        broker_pid=broker.pid(),
                    )
                )
                keys = (
                    "p50_s",
                    "p99_s",
                    "worker_emit_p50_s",
                    "worker_emit_p99_s",
                    "achieved_rate",
                    "timeline",
                    "acked_timeline",
                    "first_seconds",
                    "settle_after_history",
                )
                out = {k: r.get(k) for k in ("alarms_seen", "dials", "error", *keys)}
        finally:
            Consumer.stop_all()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
