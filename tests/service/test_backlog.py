"""A backlog produced before the worker starts: the way a new deployment meets an existing topic
history, or a worker meets its input after an outage. Kafka hands each partition's backlog out
at its own pace (one topic read days ahead of another); nothing valid may be lost to ``late``,
and the durable state must equal an in-process replay of the same events."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest

from stream.settings import Settings
from stream.tools.simulate import generate

from .harness import ROOT, WorkerProc, produce, scenario_env, wait_caught_up
from .test_resilience import _assert_exact, _metric

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_SUBS, DAYS, SEED = 300, 75, 23


@pytest.fixture(scope="module")
def history():
    events, _ = generate(N_SUBS, DAYS, SEED, fmt="records", malformed_rate=0.0)
    return list(events)


def _check_no_loss(workers, settings: Settings, records) -> None:
    late = sum(_metric(w, "churnwatch_late_events_total") for w in workers)
    rejected = sum(_metric(w, "churnwatch_rejects_total") for w in workers)
    replayed = sum(_metric(w, "churnwatch_replayed_events_total") for w in workers)
    applied = sum(_metric(w, "churnwatch_events_total") for w in workers)
    assert late == 0, f"{late:.0f} valid events dead-lettered as late"
    gaps = sum(_metric(w, "churnwatch_input_offset_gaps_total") for w in workers)
    assert gaps == 0, f"{gaps:.0f} fetches skipped input offsets"
    assert rejected == 0, f"{rejected:.0f} valid events rejected"
    # every event applied once, none twice: a worker whose partitions are revoked checkpoints
    # first, so their new owner starts at its last commit (issue 16.7: events_total over-counted)
    assert (applied, replayed) == (len(records), 0)
    _assert_exact(settings, records)


def test_backlog_before_the_worker_starts_loses_nothing(kafka_bootstrap, tmp_path, history):
    # (with the next fetch under way while a batch is handled: it moves the consumer's position
    # before the first batch is handled, which the recovery's resume offsets must not follow)
    env = scenario_env(kafka_bootstrap, uuid.uuid4().hex[:8], tmp_path, partitions=12, CHURNWATCH_PREFETCH="1")
    settings = Settings.from_env(env)
    produce(settings, history)  # the whole history first: 75 days in four topics, 48 partitions
    worker = WorkerProc(env, "w", tmp_path).start()
    try:
        wait_caught_up(settings, timeout_s=240, workers=[worker])
        _check_no_loss([worker], settings, history)
        status, body = worker.get("/healthz")
        assert status == 200, body
    finally:
        worker.stop()


def test_backlog_two_workers_started_30s_apart_lose_nothing(kafka_bootstrap, tmp_path, history):
    env = scenario_env(  # (prefetch on: fetches under way across the rebalance)
        kafka_bootstrap,
        uuid.uuid4().hex[:8],
        tmp_path,
        partitions=12,
        CHURNWATCH_BATCH_SIZE="500",
        CHURNWATCH_PREFETCH="1",
    )
    settings = Settings.from_env(env)
    produce(settings, history)
    a = WorkerProc(env, "a", tmp_path).start()
    b = WorkerProc(env, "b", tmp_path)
    try:
        # b joins while a is part way through the backlog (at most 30 s after a started), and
        # takes partitions over: their state from the changelog, their input from a's last commit
        deadline = time.monotonic() + 30
        while _metric(a, "churnwatch_events_total") < len(history) // 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        b.start()
        wait_caught_up(settings, timeout_s=300, workers=[a, b])
        deadline = time.monotonic() + 60
        while _metric(b, "churnwatch_subscribers") == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _metric(b, "churnwatch_subscribers") > 0, "b took no partitions over"
        assert _metric(a, "churnwatch_subscribers") + _metric(b, "churnwatch_subscribers") == N_SUBS
        _check_no_loss([a, b], settings, history)
    finally:
        b.stop()
        a.stop()


def _starved_cpu() -> int | None:
    """A CPU of this process's affinity set for the worker and a busy loop to share, when
    ``taskset`` can pin them (None: the test skips)."""
    if shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"):
        return None
    return min(os.sched_getaffinity(0))


class _Watch(threading.Thread):
    """Polls a worker's /healthz and applied-event count every 0.5 s while it catches up."""

    def __init__(self, worker: WorkerProc) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.done = threading.Event()
        self.statuses: list[str] = []
        self.progress: list[tuple[float, float]] = []  # (monotonic time, events applied)

    def run(self) -> None:
        while not self.done.is_set():
            try:
                _, body = self.worker.get("/healthz")
                self.statuses.append(json.loads(body).get("status", "?"))
                self.progress.append((time.monotonic(), _metric(self.worker, "churnwatch_events_total")))
            except (OSError, ValueError, AssertionError):
                pass
            self.done.wait(0.5)

    def longest_flat_s(self, total: int) -> float:
        """The longest time the applied count stood still before every event was applied."""
        longest, since, last = 0.0, None, None
        for t, n in self.progress:
            if n >= total:
                break
            if last is None or n > last:
                since, last = t, n
            longest = max(longest, t - since)
        return longest


def test_backlog_cpu_starved_worker_catches_up_without_stalling(kafka_bootstrap, tmp_path, history):
    """The way the demo stalled on a loaded 2-core machine: a large backlog on 48 partitions and a
    worker that gets half a CPU (pinned with ``taskset`` to one CPU that a busy loop shares). It
    must catch up with nothing lost, keep applying events (never 20 s without progress), never
    report itself stalled, and log no error (Faust's "Stream stopped processing, or is slow" /
    "Has not committed" floods of the stall)."""
    cpu = _starved_cpu()
    if cpu is None:
        pytest.skip("taskset not available: cannot pin the worker and a busy loop to one CPU")
    env = scenario_env(kafka_bootstrap, uuid.uuid4().hex[:8], tmp_path, partitions=12, CHURNWATCH_BATCH_SIZE="2000")
    settings = Settings.from_env(env)
    produce(settings, history)
    pin = ["taskset", "-c", str(cpu)]
    hog = subprocess.Popen([*pin, sys.executable, "-c", "while True: pass"], cwd=ROOT)
    worker = WorkerProc(env, "starved", tmp_path, cmd=[*pin, sys.executable, "-m", "stream.cli", "worker"])
    watch = _Watch(worker)
    try:
        worker.start(timeout_s=180)
        watch.start()
        wait_caught_up(settings, timeout_s=420, workers=[worker])
        watch.done.set()
        watch.join(10)
        _check_no_loss([worker], settings, history)
        assert "stalled" not in watch.statuses, watch.statuses
        assert len(watch.progress) > 4, "the worker's progress was not observed"
        flat = watch.longest_flat_s(len(history))
        assert flat < 20, f"no event applied for {flat:.1f} s while the backlog was not consumed"
        errors = [line for line in worker.log().splitlines() if "[ERROR]" in line or "[CRITICAL]" in line]
        assert not errors, "\n".join(errors[:20])
    finally:
        watch.done.set()
        hog.kill()
        hog.wait(10)
        worker.stop()
