"""Create the service's topics if missing, and check that the inputs are co-partitioned.

Faust only declares its internal topics (changelogs); a broker that auto-creates the input
topics would give them its default partition count, silently breaking co-partitioning with the
state table. So the worker makes sure, before it starts, that every input topic exists with
``CHURNWATCH_PARTITIONS`` partitions, and refuses to start if an existing one differs. The
simulator and the benches create the topics they produce to with the same function (``topics=``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from ..settings import Settings, SettingsError

__all__ = ["ensure_topics", "ensure_topics_async", "probe_brokers"]

logger = logging.getLogger(__name__)


async def ensure_topics_async(
    settings: Settings, replication_factor: int | None = 1, topics: Iterable[str] | None = None
) -> dict[str, int]:
    """Create the missing ``topics`` with ``settings.partitions`` partitions, wait until they are
    served, and return each topic's partition count.

    ``topics`` defaults to the service's own (inputs, alarms, dead letters, second-SIM stages), whose
    inputs must then be co-partitioned (else ``SettingsError``); a given list (the simulator's input
    topics, a bench's) is only created. ``replication_factor=None``: one per broker, at most 3.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        if topics is None:
            wanted = (
                list(settings.input_topics)
                + [settings.topic_alarms, settings.topic_deadletter]
                + list(settings.shadow_topics)
            )
        else:
            wanted = list(dict.fromkeys(topics))
        # ... and the tables' changelogs, compacted, as Faust would declare them: Faust declared
        # the second-SIM bands table's only when the first band key was written, and that topic's
        # appearance in the worker's subscription made the group rebalance (a worker catching up
        # a 1M-subscriber day restored its million subscribers again, mid-run)
        compacted = list(settings.changelog_topics) if topics is None else []
        existing = set(await admin.list_topics())
        missing = [t for t in wanted + compacted if t not in existing]
        if missing:
            rf = replication_factor or await _replicas(admin)
            new = [
                NewTopic(
                    t,
                    num_partitions=settings.partitions,
                    replication_factor=rf,
                    topic_configs={"cleanup.policy": "compact"} if t in compacted else {},
                )
                for t in missing
            ]
            try:
                await admin.create_topics(new)
                logger.info("created topics %s with %d partitions", missing, settings.partitions)
            except TopicAlreadyExistsError:  # another worker won the race
                pass
        counts = await _served(admin, wanted + compacted, missing)
    finally:
        await admin.close()
    if topics is not None:
        return counts
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


async def _replicas(admin) -> int:
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
    except Exception:
        brokers = 1
    return max(1, min(3, brokers))


async def _served(admin, wanted: list[str], created: list[str], timeout_s: float = 15.0) -> dict[str, int]:
    """Partition count per topic, once every topic shows its partitions and every partition of the
    ``created`` ones has a leader (a first send to a leaderless partition is refused), or at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:  # new topics take a moment to show their partitions
        described = await admin.describe_topics(wanted)
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        led = all(
            d.get("error_code", 0) == 0 and all(p.get("leader", -1) >= 0 for p in d["partitions"])
            for d in described
            if d["topic"] in created
        )
        if (led and all(counts.get(t, 0) > 0 for t in wanted)) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    if created:
        await asyncio.sleep(1.0)  # the broker applies the new metadata a moment after the controller
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
