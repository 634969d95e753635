"""The ceiling: a bare aiokafka group consumer that reads the topics and does nothing.

It commits what it has read every 0.1 s (and once more at the end): "committed == end offsets"
means the same for it as for the others, and its short run is timed finely enough.
"""

from __future__ import annotations

import asyncio
import os
import signal

from aiokafka import AIOKafkaConsumer


async def main() -> None:
    topics = os.environ["BENCH_TOPICS"].split(",")
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=os.environ["BENCH_BOOTSTRAP"],
        group_id=os.environ["BENCH_GROUP"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await consumer.start()
    n = 0
    last_commit = loop.time()
    dirty = False
    try:
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=100, max_records=20_000)
            for msgs in got.values():
                n += len(msgs)
                dirty = True
            if dirty and (not got or loop.time() - last_commit >= 0.1):
                await consumer.commit()
                last_commit = loop.time()
                dirty = False
    finally:
        await consumer.commit()
        await consumer.stop()
        print(f"bare consumer: {n} messages", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
