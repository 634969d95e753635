"""Optional path: where a Docker engine answers, the same round trip runs on testcontainers'
Kafka (KRaft). Where none answers (as on the project's build machines), it is skipped."""

from __future__ import annotations

import pytest


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(
    not _docker_answers(), reason="no Docker engine answers here; the local Maven-built broker is used instead"
)
async def test_roundtrip_on_testcontainers_kafka():
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer("apache/kafka:3.9.1").with_kraft() as kafka:
        boot = kafka.get_bootstrap_server()
        producer = AIOKafkaProducer(bootstrap_servers=boot)
        await producer.start()
        try:
            await producer.send_and_wait("tc.roundtrip", key=b"8613800000001", value=b'{"type":"sms"}')
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("tc.roundtrip", bootstrap_servers=boot, auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        try:
            msg = await consumer.getone()
        finally:
            await consumer.stop()
        assert (msg.key, msg.value) == (b"8613800000001", b'{"type":"sms"}')
