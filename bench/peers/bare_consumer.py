"""The ceiling: a bare aiokafka group consumer that reads the topics and does nothing.

It commits like the worker does (every second, and once more at the end), so "committed == end
offsets" means the same thing for it as for the others.
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
        enable_auto_commit=True,
        auto_commit_interval_ms=1000,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await consumer.start()
    n = 0
    try:
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for msgs in got.values():
                n += len(msgs)
            if not got:
                await consumer.commit()
    finally:
        await consumer.commit()
        await consumer.stop()
        print(f"bare consumer: {n} messages", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
