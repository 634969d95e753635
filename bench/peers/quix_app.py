"""Peer: Quix Streams doing the same per-subscriber daily aggregation (installed for the benchmark
only: ``pip install quixstreams``; ``python -m bench.run`` installs it when missing).

One StreamingDataFrame per input topic (key = msisdn), a 1-day tumbling window on the event's own
time (``ts``), ``Count``/``Sum`` aggregations, RocksDB state with changelog topics, at-least-once,
committing every second like the worker. Run: ``python -m bench.peers.quix_app``.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum


def _ts_ms(value, headers, timestamp, timestamp_type) -> int:
    return int(value["ts"] * 1000)


def build() -> Application:
    app = Application(
        broker_address=os.environ.get("BENCH_BOOTSTRAP", "127.0.0.1:19092"),
        consumer_group=os.environ.get("BENCH_GROUP", "bench-quix"),
        auto_offset_reset="earliest",
        commit_interval=1.0,
        state_dir=os.environ.get("BENCH_DATA_DIR", "var/bench-quix"),
        loglevel=os.environ.get("BENCH_LOGLEVEL", "WARNING"),
    )
    calls_t, sms_t, rch_t = os.environ.get("BENCH_TOPICS", "cdr.calls,cdr.sms,cdr.recharges").split(",")[:3]
    day = timedelta(days=1)
    grace = timedelta(hours=6)

    calls = app.dataframe(
        app.topic(calls_t, key_deserializer="str", value_deserializer="json", timestamp_extractor=_ts_ms)
    )
    calls = calls.apply(lambda v: {"minutes": v.get("duration_s", 0) / 60.0})
    calls.tumbling_window(day, grace_ms=grace).agg(calls=Count(), minutes=Sum("minutes")).current()

    sms = app.dataframe(app.topic(sms_t, key_deserializer="str", value_deserializer="json", timestamp_extractor=_ts_ms))
    sms.tumbling_window(day, grace_ms=grace).agg(sms=Count()).current()

    rch = app.dataframe(app.topic(rch_t, key_deserializer="str", value_deserializer="json", timestamp_extractor=_ts_ms))
    rch.tumbling_window(day, grace_ms=grace).agg(recharges=Count(), amount=Sum("amount")).current()
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    build().run()
