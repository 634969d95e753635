"""``churnwatch worker`` start-up: misconfiguration fails fast and clearly; ``faust -A stream.service.app
worker`` runs the same service."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import pytest

from stream.settings import Settings

from .harness import ROOT, WorkerProc, scenario_env


def _run_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", "worker", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "extra, needle",
    [
        ({"CHURNWATCH_PARTITONS": "3"}, "unknown setting(s): CHURNWATCH_PARTITONS"),
        ({"CHURNWATCH_WEB_PORT": "http"}, "CHURNWATCH_WEB_PORT='http': expected int"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "Kafka broker 127.0.0.1:1 is unreachable"),
        ({"CHURNWATCH_LOG_LEVEL": "verbose"}, "CHURNWATCH_LOG_LEVEL='verbose': expected one of"),
        ({"CHURNWATCH_WEB_HOST": "not a host"}, "CHURNWATCH_WEB_HOST='not a host': not a host name or IP address"),
        ({"CHURNWATCH_APP_ID": ""}, "CHURNWATCH_APP_ID is set but empty"),
        ({"CHURNWATCH_TOPIC_ALARMS": ""}, "CHURNWATCH_TOPIC_ALARMS is set but empty"),
    ],
)
def test_misconfiguration_fails_at_startup(tmp_path, extra, needle):
    env = scenario_env("127.0.0.1:1", "x", tmp_path)
    env.update(extra)
    out = _run_worker(env, "--broker-timeout", "2")
    assert out.returncode == 2, out.stderr
    assert "configuration error" in out.stderr and needle in out.stderr


def test_bad_threshold_file_fails_at_startup(tmp_path):
    bad = tmp_path / "thresholds.toml"
    bad.write_text("drop_treshold = 0.4\n")  # a typo'd key
    env = scenario_env("127.0.0.1:1", "x", tmp_path)
    out = _run_worker(env, "--config", str(bad), "--broker-timeout", "2")
    assert out.returncode == 2
    assert "bad threshold file" in out.stderr and "drop_treshold" in out.stderr


@pytest.mark.kafka
def test_faust_cli_runs_the_same_service(kafka_bootstrap, tmp_path):
    env = scenario_env(kafka_bootstrap, uuid.uuid4().hex[:8], tmp_path, partitions=3)
    w = WorkerProc(
        env, "faust", tmp_path, cmd=[sys.executable, "-m", "faust", "-A", "stream.service.app", "worker", "-l", "warn"]
    )
    w.env["CHURNWATCH_WEB_PORT"] = str(w.port)
    try:
        w.start()
        status, body = w.get("/metrics")
        assert status == 200 and b"# TYPE churnwatch_events_total counter" in body
        assert b'churnwatch_gc_seconds_total{generation="2"}' in body  # the worker process's set-up ran
        # it created the co-partitioned input topics and its tables' changelogs (the second-SIM
        # bands table's too, which Faust left to the first band key: its appearance rebalanced the group)
        settings = Settings.from_env(env)
        want = [*settings.input_topics, *settings.changelog_topics]
        assert f"{settings.app_id}-shadow-bands-changelog" in want
        deadline = time.monotonic() + 60
        while True:
            counts = asyncio.run(_partition_counts(kafka_bootstrap, want))
            if len(counts) == len(want) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert counts == {t: 3 for t in want}, counts
    finally:
        w.stop()


async def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(topics) if d["partitions"]}
    finally:
        await admin.close()


def test_web_port_in_use_fails_at_startup(tmp_path):
    """A web port already taken is a start-up mistake: a clear message and exit 2, no traceback."""
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        env = scenario_env("127.0.0.1:1", "x", tmp_path)
        env["CHURNWATCH_WEB_PORT"] = str(busy.getsockname()[1])
        out = _run_worker(env, "--broker-timeout", "2")
    finally:
        busy.close()
    assert out.returncode == 2, out.stderr
    assert "cannot serve the web views on 127.0.0.1:" in out.stderr and "Traceback" not in out.stderr
