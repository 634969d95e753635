"""Foundation: the real broker answers, round-trips messages, and a Faust app boots on it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.dev.kafka import broker_answers

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parent.parent


def test_broker_answers_metadata(kafka_bootstrap):
    assert broker_answers(kafka_bootstrap)
    # and a port nobody listens on does not
    assert not broker_answers("127.0.0.1:1", timeout_s=1.0)


async def test_roundtrip_produce_consume(kafka_bootstrap, unique):
    topic = f"roundtrip.{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    sent = {f"86138{i:08d}".encode(): f'{{"type":"call","n":{i}}}'.encode() for i in range(200)}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for k, v in sent.items():
            await producer.send(topic, key=k, value=v)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    got: dict[bytes, bytes] = {}
    partitions_by_key: dict[bytes, set[int]] = {}
    try:
        deadline = time.monotonic() + 30
        while len(got) < len(sent) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    got[m.key] = m.value
                    partitions_by_key.setdefault(m.key, set()).add(tp.partition)
    finally:
        await consumer.stop()
    assert got == sent
    # keyed messages spread over the partitions, and each key stays on one partition
    assert len({p for ps in partitions_by_key.values() for p in ps}) == 3
    assert all(len(ps) == 1 for ps in partitions_by_key.values())


BOOT_APP = textwrap.dedent(
    """
    import os, faust
    app = faust.App(os.environ["APP_ID"], broker="kafka://" + os.environ["BOOTSTRAP"], store="memory://",
                    web_enabled=False, topic_partitions=4, topic_replication_factor=1, autodiscover=False)
    # internal=True: Faust declares (creates) these topics itself, with 4 partitions
    src = app.topic(os.environ["SRC"], partitions=4, value_serializer="raw", internal=True)
    out = app.topic(os.environ["OUT"], partitions=4, value_serializer="raw", internal=True)
    counts = app.Table("counts", partitions=4, default=int)

    @app.agent(src)
    async def echo(stream):
        async for value in stream:
            counts["n"] += 1
            await out.send(value=value.upper())
    """
)


async def test_faust_app_boots_and_creates_topics(kafka_bootstrap, unique, tmp_path):
    app_id, src, out = f"boot-{unique}", f"boot.src.{unique}", f"boot.out.{unique}"
    (tmp_path / "bootapp.py").write_text(BOOT_APP)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:  # the output topic is ours to create (the broker does not auto-create topics)
        await admin.create_topics([NewTopic(out, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    env = {
        **os.environ,
        "APP_ID": app_id,
        "BOOTSTRAP": kafka_bootstrap,
        "SRC": src,
        "OUT": out,
        "PYTHONPATH": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "bootapp", "worker", "-l", "warn", "--without-web"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            want = {src, f"{app_id}-counts-changelog"}  # the agent's source and the table's changelog
            deadline = time.monotonic() + 60
            topics: set[str] = set()
            while time.monotonic() < deadline and not want <= topics:
                topics = set(await admin.list_topics())
                await asyncio.sleep(0.5)
            assert want <= topics, f"Faust did not create {want - topics}"
            described = await admin.describe_topics([src, f"{app_id}-counts-changelog"])
            assert [len(d["partitions"]) for d in described] == [4, 4]
        finally:
            await admin.close()
        # and it processes: a message in comes out transformed
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        consumer = AIOKafkaConsumer(out, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        try:
            await producer.send_and_wait(src, b"hello kafka")
            deadline = time.monotonic() + 60
            values: list[bytes] = []
            while time.monotonic() < deadline and not values:
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    values += [m.value for m in msgs]
            assert values == [b"HELLO KAFKA"]
        finally:
            await consumer.stop()
            await producer.stop()
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-3000:]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
