"""Records fetched while a rebalance stops the flow are dropped and must come again: the consumer
seeks back to the committed offsets, and a partition without a commit back to its log's start.
aiokafka's own ``seek_to_committed`` leaves such a partition where the fetcher stands, which lost
the first days' calls of a paused-broker run; the batch consumer's thread seeks it (real broker)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from stream.service.faust_adapter import _ConsumerThread

pytestmark = pytest.mark.kafka


async def _consume_all(consumer: AIOKafkaConsumer, n: int) -> int:
    seen, deadline = 0, time.monotonic() + 30
    while seen < n and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        seen += sum(map(len, batch.values()))
    return seen


def _thread_over(consumer: AIOKafkaConsumer, changelogs: set[str], reset: str = "earliest") -> _ConsumerThread:
    """The batch consumer's thread around ``consumer``, its calls made in this loop."""
    thread = _ConsumerThread.__new__(_ConsumerThread)
    thread._consumer = consumer
    thread.consumer = SimpleNamespace(
        app=SimpleNamespace(
            tables=SimpleNamespace(changelog_topics=changelogs),
            conf=SimpleNamespace(consumer_auto_offset_reset=reset),
        )
    )

    async def call_thread(fn, *args, **kwargs):
        return await fn(*args, **kwargs)

    thread.call_thread = call_thread
    return thread


async def test_seek_to_committed_sends_partitions_without_a_commit_to_their_start(kafka_bootstrap, unique):
    topic, changelog = f"seek.{unique}", f"seek-changelog.{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in (topic, changelog)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for t in (topic, changelog):
            for p in range(3):
                for i in range(40):
                    await producer.send(t, key=b"k", value=b"%d" % i, partition=p)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        changelog,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"seek-{unique}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        assert await _consume_all(consumer, 240) == 240
        tp0, tp1, tp2 = (TopicPartition(topic, p) for p in range(3))
        ctp = TopicPartition(changelog, 0)
        await consumer.commit({tp1: 15, tp2: 0})
        # aiokafka alone: the partition without a commit (and the one committed at 0) stay at 40
        await consumer.seek_to_committed()
        assert [await consumer.position(tp) for tp in (tp0, tp1, tp2)] == [40, 15, 40]
        assert await _consume_all(consumer, 25) == 25  # (tp1 again, up to its end)
        committed = await _thread_over(consumer, {changelog}).seek_to_committed()
        assert committed[tp0] is None and committed[tp1] == 15 and committed[tp2] == 0
        assert [await consumer.position(tp) for tp in (tp0, tp1, tp2)] == [0, 15, 0]
        assert await consumer.position(ctp) == 40  # a changelog is left to Faust's recovery
        await _consume_all(consumer, 40 + 25 + 40)
        await _thread_over(consumer, {changelog}, reset="latest").seek_to_committed()
        assert [await consumer.position(tp) for tp in (tp0, tp1, tp2)] == [40, 15, 0]
    finally:
        await consumer.stop()
