"""Producing simulator events to the Kafka input topics (topic by event type, key = msisdn)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Iterator

import orjson

from ...service.topics import ensure_topics_async
from .encode import TOPIC_KINDS

_MSISDN_RE = re.compile(rb"86[0-9]{11}")
_TOPIC_KIND_OF = {"call": "calls", "sms": "sms", "recharge": "recharges", "profile": "profiles"}  # by event type


def _as_record(item, last_key: bytes) -> tuple[str, bytes, bytes]:
    if isinstance(item, tuple):
        return item
    if isinstance(item, dict):
        return _TOPIC_KIND_OF[item["type"]], str(item["msisdn"]).encode(), orjson.dumps(item)
    try:
        obj = orjson.loads(item)
        return _TOPIC_KIND_OF[obj["type"]], str(obj["msisdn"]).encode(), bytes(item)
    except Exception:  # malformed: calls topic, a plausible key
        m = _MSISDN_RE.search(item)
        return "calls", (m.group(0) if m else last_key), bytes(item)


async def produce_to_kafka(
    events: Iterable,
    settings=None,
    rate: float = 0.0,
    progress: bool = True,
    stop_event: asyncio.Event | None = None,
    total: int | None = None,
) -> int:
    """Send simulator events to the input topics (topic by type, key = msisdn); returns the count.

    ``events``: records ``(topic_kind, key, value)`` (``generate(fmt="records")``), raw JSON
    lines or event dicts. Malformed lines go to the calls topic with a plausible key. ``rate``
    events/s (0 = as fast as possible); ``stop_event`` ends early when set. Missing topics are
    created first with ``settings.partitions`` partitions.
    """
    from aiokafka import AIOKafkaProducer

    from ...settings import Settings
    from ..progress import Progress

    settings = settings or Settings.from_env()
    topic_of = dict(zip(TOPIC_KINDS, settings.input_topics, strict=True))
    await ensure_topics_async(settings, replication_factor=None, topics=topic_of.values())
    producer = AIOKafkaProducer(
        **settings.kafka_client_kwargs(), linger_ms=20, max_batch_size=512 * 1024, acks="all", enable_idempotence=False
    )
    await producer.start()
    sent = 0
    t0 = time.monotonic()
    last_key = b"8613800000000"
    pending: list = []
    bar = Progress(total, "events", enabled=None if progress else False)
    try:
        for item in events:
            if stop_event is not None and stop_event.is_set():
                break
            kind, key, value = _as_record(item, last_key)
            last_key = key
            pending.append(await producer.send(topic_of[kind], value=value, key=key))
            sent += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
                bar.update(2000)
                if stop_event is not None and stop_event.is_set():
                    break
            if rate > 0 and sent % max(1, min(200, int(rate // 10) or 1)) == 0:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    if pending:
                        await asyncio.gather(*pending)
                        bar.update(len(pending))
                        pending.clear()
                    await asyncio.sleep(ahead)
        if pending:
            await asyncio.gather(*pending)
            bar.update(len(pending))
        await producer.flush()
    finally:
        bar.close()
        await producer.stop()
    return sent


def _tee(records: Iterable[tuple[str, bytes, bytes]], f) -> Iterator[tuple[str, bytes, bytes]]:
    """The records, each value also written to ``f`` as a line (a copy of what was sent)."""
    for rec in records:
        f.write(rec[2] + b"\n")
        yield rec
