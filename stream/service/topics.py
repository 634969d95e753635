"""Create the service's topics if missing, and check that the inputs are co-partitioned.

Faust only declares its internal topics (changelogs); a broker that auto-creates the input
topics would give them its default partition count, silently breaking co-partitioning with the
state table. So the worker makes sure, before it starts, that every input topic exists with
``CHURNWATCH_PARTITIONS`` partitions, and refuses to start if an existing one differs.
"""

from __future__ import annotations

import asyncio
import logging

from ..settings import Settings, SettingsError

__all__ = ["ensure_topics", "probe_brokers"]

logger = logging.getLogger(__name__)


async def ensure_topics_async(settings: Settings, replication_factor: int = 1) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        wanted = (
            list(settings.input_topics)
            + [settings.topic_alarms, settings.topic_deadletter]
            + list(settings.shadow_topics)
        )
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(t, num_partitions=settings.partitions, replication_factor=replication_factor)
                        for t in missing
                    ]
                )
                logger.info("created topics %s with %d partitions", missing, settings.partitions)
            except TopicAlreadyExistsError:  # another worker won the race
                pass
        counts: dict[str, int] = {}
        for _ in range(50):  # new topics take a moment to show their partitions
            described = await admin.describe_topics(wanted)
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            if all(counts.get(t, 0) > 0 for t in wanted):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    # the evidence topic is keyed by subscriber and read with the inputs: co-partitioned too
    wrong = {
        t: counts.get(t)
        for t in (*settings.input_topics, settings.topic_shadow_evidence)
        if counts.get(t) != settings.partitions
    }
    if wrong:
        raise SettingsError(
            f"input topics must be co-partitioned with CHURNWATCH_PARTITIONS={settings.partitions}, but have {wrong}; "
            "set CHURNWATCH_PARTITIONS to match or repartition the topics"
        )
    return counts


def ensure_topics(settings: Settings, replication_factor: int = 1) -> dict[str, int]:
    return asyncio.run(ensure_topics_async(settings, replication_factor))


async def _metadata(client_kwargs: dict, timeout_s: float) -> int:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(**client_kwargs, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        md = await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
        return len(md.brokers())
    finally:
        await client.close()


def probe_brokers(client_kwargs: dict, timeout_s: float = 3.0) -> int:
    """Live brokers in the cluster's answer to a metadata request; raises if none answers."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # "connect call failed" while a broker boots is expected
    try:
        return asyncio.run(_metadata(client_kwargs, timeout_s))
    finally:
        quiet.setLevel(level)
