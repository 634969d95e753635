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
def local_kafka():
    """The session's test broker (a ``LocalKafka``), or None when ``KAFKA_BOOTSTRAP_SERVERS``
    names another one (tests that stop or pause the broker skip then)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    kafka = LocalKafka(port=TEST_KAFKA_PORT)
    kafka.reset()  # fresh data each session: no topics or groups left over from an earlier run
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.reset()  # stop it and delete its data (hundreds of MB per session otherwise)


@pytest.fixture(scope="session")
def kafka_bootstrap(local_kafka):
    return os.environ["KAFKA_BOOTSTRAP_SERVERS"] if local_kafka is None else local_kafka.bootstrap


@pytest.fixture
def unique():
    """A short unique suffix for topic and group names, so tests never see each other's data."""
    return uuid.uuid4().hex[:10]


def pytest_collection_modifyitems(config, items):
    """Every test that uses the broker carries the ``kafka`` mark (so ``-m "not kafka"`` never
    starts or touches one), whether or not its module says so."""
    for item in items:
        if {"kafka_bootstrap", "local_kafka"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)
