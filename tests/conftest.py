"""Shared fixtures. The Kafka broker is real: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else the local
KRaft broker that ``stream.dev.kafka`` assembles from Maven Central, started once per session on
its own port and data dir (so a running demo broker is never touched) and stopped at the end."""

from __future__ import annotations

import os
import uuid

import pytest

from stream.dev.kafka import LocalKafka

TEST_KAFKA_PORT = int(os.environ.get("CHURNWATCH_TEST_KAFKA_PORT", "19192"))


@pytest.fixture(scope="session")
def kafka_bootstrap():
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    kafka = LocalKafka(port=TEST_KAFKA_PORT)
    kafka.reset()  # fresh data each session: no topics or groups left over from an earlier run
    bootstrap = kafka.start()
    try:
        yield bootstrap
    finally:
        kafka.reset()  # stop it and delete its data (hundreds of MB per session otherwise)


@pytest.fixture
def unique():
    """A short unique suffix for topic and group names, so tests never see each other's data."""
    return uuid.uuid4().hex[:10]


# modules whose tests are pure (no broker, no worker process, no fixed port): with ``-n 2`` (make
# test) they run on one xdist worker beside the others, which keep to the other worker in order
PURE = ("tests/engine/", "tests/test_tune.py", "tests/test_report.py", "tests/test_schemas.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Every test that uses the broker carries the ``kafka`` mark (so ``-m "not kafka"`` never
    starts or touches one), whether or not its module says so. Every test but the pure ones is in
    one xdist group (``--dist loadgroup``): one process runs them one at a time, as without xdist
    (one broker per session, the ports, the CPU-starved and timed scenarios), while the other
    runs the engine's tests in the time the broker tests spend waiting."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)
        path = item.nodeid.replace("\\", "/")
        if not any(path.startswith(p) for p in PURE):
            item.add_marker(pytest.mark.xdist_group("serial"))
