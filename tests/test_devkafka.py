"""The local broker tool: idempotent start, env override, clean stop."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stream.dev import kafka as devkafka
from stream.dev.kafka import LocalKafka, broker_answers

ROOT = devkafka.ROOT


def test_jar_cache_is_complete_and_ignored():
    libs = devkafka.ensure_jars()
    names = {p.name for p in libs.iterdir()}
    assert f"kafka_2.13-{devkafka.KAFKA_VERSION}.jar" in names
    assert "slf4j-reload4j-1.7.36.jar" in names
    assert f"kafka-clients-{devkafka.KAFKA_VERSION}.jar" in names
    ignored = subprocess.run(["git", "check-ignore", "-q", str(libs)], cwd=ROOT).returncode
    assert ignored == 0, "the jar cache must be git-ignored"
    assert subprocess.run(["git", "check-ignore", "-q", str(devkafka.VAR_DIR / "kafka-1")], cwd=ROOT).returncode == 0


def test_env_override_starts_nothing(kafka_bootstrap):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    out = subprocess.run(
        [sys.executable, "-m", "stream.dev.kafka", "start", "--port", "19999"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "starting nothing" in out.stdout
    assert not (devkafka.VAR_DIR / "kafka-19999" / "kafka.pid").exists()


@pytest.mark.slow
def test_start_is_idempotent_and_stop_is_clean(tmp_path):
    k = LocalKafka(port=19692, var_dir=tmp_path)
    try:
        boot = k.start()
        pid = int(k.pid_file.read_text())
        assert broker_answers(boot)
        assert k.start() == boot  # a second start reuses the running broker
        assert int(k.pid_file.read_text()) == pid
        # KRaft storage formatted once, with our cluster id and static voters
        meta = (k.home / "data" / "meta.properties").read_text()
        assert devkafka.CLUSTER_ID in meta
        props = (k.home / "server.properties").read_text()
        assert "controller.quorum.voters=1@127.0.0.1:19693" in props
        assert "group.initial.rebalance.delay.ms=0" in props
    finally:
        k.stop()
    assert not k.pid_file.exists()
    assert not broker_answers(k.bootstrap, timeout_s=1.0)
    # restart on the same data works (formatting is skipped)
    try:
        assert k.start() == f"127.0.0.1:{k.port}"
    finally:
        k.stop()
