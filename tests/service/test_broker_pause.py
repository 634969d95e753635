"""A paused broker (SIGSTOP: a long GC pause, a frozen VM, a saturated disk) in the middle of a
backlog, then resumed: the worker rides it out without a restart, says so at ``/healthz``, and
ends with exactly the state and alarms of an uninterrupted run. The session's test broker is the
one paused (nothing else uses it meanwhile)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import orjson
import pytest

from stream.settings import Settings

from .harness import (
    WorkerProc,
    assert_backtest_alarms,
    backtest_alarms,
    exact_env,
    produce,
    read_alarms,
    scenario_env,
    wait_caught_up,
)
from .test_resilience import _assert_exact, _metric, _records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _health(worker: WorkerProc) -> tuple[int, dict]:
    try:
        status, body = worker.get("/healthz")
    except OSError:
        return 0, {}
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, {}


def test_a_paused_broker_mid_backlog_costs_nothing(local_kafka, tmp_path):
    if local_kafka is None:
        pytest.skip("pauses the test broker: not one named by KAFKA_BOOTSTRAP_SERVERS")
    kafka = local_kafka  # the session's broker: nothing else uses it while this test runs
    bootstrap = kafka.bootstrap
    worker = None
    try:
        records, _ = _records(150, 35, 17)
        env = scenario_env(
            bootstrap,
            uuid.uuid4().hex[:8],
            tmp_path,
            partitions=4,
            CHURNWATCH_BROKER_DOWN_S="6",
            CHURNWATCH_SESSION_TIMEOUT_S="6",
            CHURNWATCH_LOG_LEVEL="info",
            **exact_env(tmp_path),
        )
        settings = Settings.from_env(env)
        worker = WorkerProc(env, "w", tmp_path).start()
        produce(settings, records)  # a backlog: the worker is busy with it when the broker stops
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until it has applied a part of it
            if _metric(worker, "churnwatch_events_total") >= len(records) // 10:
                break
            time.sleep(0.05)
        applied_before = _metric(worker, "churnwatch_events_total")
        pid = kafka.pid()
        assert pid, "the broker's pid is not known"
        os.kill(pid, signal.SIGSTOP)
        seen_unreachable = False
        try:
            t_end = time.monotonic() + 12  # twice the session timeout, longer than the broker-down age
            while time.monotonic() < t_end:
                status, health = _health(worker)
                seen_unreachable |= status == 503 and health.get("status") == "broker_unreachable"
                time.sleep(1)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert worker.proc.poll() is None, f"the worker exited during the pause:\n{worker.log()[-3000:]}"
        wait_caught_up(settings, timeout_s=180, workers=[worker])
        assert worker.proc.poll() is None, f"the worker exited after the pause:\n{worker.log()[-3000:]}"
        status, health = _health(worker)
        assert status == 200 and health.get("status") == "ok", health
        print(f"paused broker: {applied_before:.0f} of {len(records)} events applied when it stopped")
    finally:
        if worker is not None:
            worker.stop()
    assert seen_unreachable, "/healthz never said broker_unreachable while the broker was stopped"
    _assert_exact(settings, records)
    online = read_alarms(settings)
    (tmp_path / "service-alarms.ndjson").write_bytes(
        b"".join(orjson.dumps(a) + b"\n" for a in online)
    )  # (to compare on failure)
    report = assert_backtest_alarms(online, backtest_alarms(records, settings.config_path, tmp_path))
    print(f"paused broker: {report}")
