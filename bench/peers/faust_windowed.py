"""Peer: the idiomatic Faust way — one event at a time into a tumbling-window table.

A typed ``faust.Record`` per event (JSON), a table of per-subscriber daily counters windowed on
the event's own time (``relative_to_field``), updated once per event; Faust sends one changelog
message per update. Same topics (calls, SMS, recharges) and same partitions as the worker, its
own consumer group. Run: ``python -m bench.peers.faust_windowed worker -l warning``.
"""

from __future__ import annotations

import os
from datetime import timedelta

import faust


class Event(faust.Record, serializer="json"):
    type: str
    msisdn: str
    ts: float
    direction: str | None = None
    peer: str | None = None
    duration_s: int = 0
    imei: str | None = None
    cell_id: str | None = None
    amount: float = 0.0
    channel: str | None = None
    peer_operator: str | None = None


PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "12"))

app = faust.App(
    os.environ.get("BENCH_GROUP", "bench-faust"),
    broker=f"kafka://{os.environ.get('BENCH_BOOTSTRAP', '127.0.0.1:19092')}",
    store="rocksdb://",
    datadir=os.environ.get("BENCH_DATA_DIR", "var/bench-faust"),
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    web_port=int(os.environ.get("BENCH_WEB_PORT", "6067")),
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=1.0,
    table_standby_replicas=0,
    autodiscover=False,
)

events_topic = app.topic(
    *os.environ.get("BENCH_TOPICS", "cdr.calls,cdr.sms,cdr.recharges").split(","),
    key_type=bytes,
    value_type=Event,
    partitions=PARTITIONS,
)

daily = (
    app.Table("daily-usage", default=dict, partitions=PARTITIONS)
    .tumbling(timedelta(days=1), expires=timedelta(days=2))
    .relative_to_field(Event.ts)
)


@app.agent(events_topic)
async def aggregate(events):
    async for ev in events:  # one event at a time
        cur = dict(daily[ev.msisdn].current())
        if ev.type == "call":
            cur["calls"] = cur.get("calls", 0) + 1
            cur["minutes"] = cur.get("minutes", 0.0) + ev.duration_s / 60.0
        elif ev.type == "sms":
            cur["sms"] = cur.get("sms", 0) + 1
        elif ev.type == "recharge":
            cur["recharges"] = cur.get("recharges", 0) + 1
        daily[ev.msisdn] = cur


if __name__ == "__main__":
    app.main()
