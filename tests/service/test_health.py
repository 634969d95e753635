"""Health and lookups while things fail, on a real broker: ``/subscribers`` answers 503 with
``Retry-After`` while partitions are being recovered (not a false 404 or a 500), ``/healthz``
answers 503 ``broker_unreachable`` when the broker is gone, and SIGTERM then still stops the worker
within its shutdown grace period."""

from __future__ import annotations

import os
import signal
import time
import uuid

import orjson
import pytest

from stream.dev.kafka import LocalKafka

from .harness import WorkerProc, scenario_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _get(worker: WorkerProc, path: str):
    import urllib.request

    try:
        with urllib.request.urlopen(worker.url + path, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_lookup_answers_503_with_retry_after_while_recovering(kafka_bootstrap, tmp_path):
    # every recovery holds 8 s before the engine is rebuilt (fault injection): a slow restore
    env = scenario_env(kafka_bootstrap, uuid.uuid4().hex[:8], tmp_path, partitions=2, CHURNWATCH_RECOVERY_HOLD_S="8")
    worker = WorkerProc(env, "w", tmp_path).start()
    try:
        seen_503 = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, headers, body = _get(worker, "/subscribers/8613800000000")
            if status == 503:
                seen_503 = True
                assert headers.get("Retry-After") == "5", headers
                assert orjson.loads(body)["error"].startswith("partitions are being recovered")
            elif status == 404:
                break  # recovered: that subscriber is really unknown
            else:
                raise AssertionError((status, body[:300]))
            time.sleep(0.2)
        assert seen_503, "never answered 503 while recovering"
        assert status == 404, (status, body[:300])
    finally:
        worker.stop()


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="stops its own broker")
def test_healthz_says_broker_unreachable_when_the_broker_is_gone(tmp_path):
    port = int(os.environ.get("CHURNWATCH_TEST_KAFKA_PORT", "19192")) + 300
    kafka = LocalKafka(port=port)
    kafka.reset()
    bootstrap = kafka.start()
    worker = None
    try:
        env = scenario_env(bootstrap, uuid.uuid4().hex[:8], tmp_path, partitions=2)
        # shorter than the defaults (20 s, 25 s) to keep the suite short; the defaults are the same code
        env.update(CHURNWATCH_BROKER_DOWN_S="6", CHURNWATCH_SHUTDOWN_GRACE_S="8")
        worker = WorkerProc(env, "w", tmp_path).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # up and past its first recovery
            status, _, body = _get(worker, "/healthz")
            if status == 200 and not orjson.loads(body)["recovering"]:
                break
            time.sleep(0.5)
        assert status == 200 and orjson.loads(body)["status"] == "ok", body
        time.sleep(3)
        kafka.stop()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status, _, body = _get(worker, "/healthz")
            if status == 503:
                break
            time.sleep(1)
        health = orjson.loads(body)
        assert status == 503 and health["status"] == "broker_unreachable", health
        assert health["broker_answered_s_ago"] >= 6
        # and SIGTERM still stops it, within the shutdown grace period (8 s here), in this state too
        t0 = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.wait(60)
        assert time.monotonic() - t0 <= 18, f"took {time.monotonic() - t0:.0f} s to stop"
    finally:
        if worker is not None:
            worker.kill()
        kafka.reset()  # stops it (if still up) and deletes its data
