"""Parts of the worker tested without a broker: the batch path's fetched records
(``faust_adapter._RawPartitionRecords``: aiokafka's own record objects for the input topics, the
same offsets, keys and values as aiokafka's ``ConsumerRecord`` s, and the fetch position kept
record by record; record batches built in memory), and the state table's watermark items."""

from __future__ import annotations

import struct
from itertools import islice

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream.service import faust_adapter
from stream.service.faust_adapter import _RawPartitionRecords

RAW = "test.raw-records"


def _batches(sizes: list[int], first_offset: int = 0) -> bytes:
    """Record batches of ``sizes`` records, offsets consecutive from ``first_offset``."""
    buf = bytearray()
    offset = first_offset
    for n in sizes:
        b = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 20,
        )
        for i in range(n):
            b.append(
                i,
                timestamp=1_700_000_000_000 + offset + i,
                key=b"k%d" % (offset + i),
                value=b"v%d" % (offset + i),
                headers=[],
            )
        data = bytearray(b.build())
        struct.pack_into(">q", data, 0, offset)  # the batch's base offset (the broker sets it)
        buf += data
        offset += n
    return bytes(buf)


def _records(topic: str, data: bytes, fetch_offset: int) -> _RawPartitionRecords:
    return _RawPartitionRecords(TopicPartition(topic, 3), MemoryRecords(data), [], fetch_offset, None, None, True, 0)


@pytest.fixture
def raw_topic():
    faust_adapter._RAW_RECORD_TOPICS.add(RAW)
    yield RAW
    faust_adapter._RAW_RECORD_TOPICS.discard(RAW)


def test_input_records_are_aiokafkas_own_with_the_same_offsets_keys_and_values(raw_topic):
    data = _batches([4, 1, 5])
    raw = list(_records(raw_topic, data, 0))
    full = list(_records("other.topic", data, 0))
    assert [type(r) for r in full] == [ConsumerRecord] * 10  # other topics: unchanged
    assert not any(isinstance(r, ConsumerRecord) for r in raw)
    assert [(r.offset, r.key, r.value, r.timestamp) for r in raw] == [
        (r.offset, r.key, r.value, r.timestamp) for r in full
    ]
    assert [r.offset for r in raw] == list(range(10))
    assert raw[7].key == b"k7" and raw[7].value == b"v7"


def test_a_fetch_from_inside_a_batch_skips_what_came_before(raw_topic):
    data = _batches([6, 4], first_offset=4)  # the broker answers from the batch holding offset 6
    got = _records(raw_topic, data, 6)
    assert [r.offset for r in got] == [6, 7, 8, 9, 10, 11, 12, 13]
    assert got.next_fetch_offset == 14
    assert [r.offset for r in _records("other.topic", data, 6)] == list(range(6, 14))  # as aiokafka's own


def test_the_position_follows_each_record_taken(raw_topic):
    """aiokafka's FetchResult takes at most ``max_records`` and resumes from ``next_fetch_offset``:
    it must be right after the last record taken, not at the end of its batch."""
    recs = _records(raw_topic, _batches([5, 5]), 0)
    taken = list(islice(recs, 3))
    assert [r.offset for r in taken] == [0, 1, 2]
    assert recs.next_fetch_offset == 3
    taken = list(islice(recs, 4))
    assert [r.offset for r in taken] == [3, 4, 5, 6]
    assert recs.next_fetch_offset == 7


def test_a_watermark_item_says_where_decisions_stand():
    """The state table's per-partition watermark value (after its partition header): the decision
    time, NaN before any decision; then the last day decided in full (absent before 2026-12-07)."""
    from stream.service.churn import _DECIDED, _WM, parse_watermark

    assert parse_watermark(_WM.pack(1_769_000_000.0) + _DECIDED.pack(20_475)) == (1_769_000_000.0, 20_475)
    assert parse_watermark(_WM.pack(float("nan")) + _DECIDED.pack(20_457)) == (None, 20_457)  # not begun
    assert parse_watermark(_WM.pack(1_769_000_000.0)) == (1_769_000_000.0, None)  # an older worker's


def test_a_caught_up_partition_holds_decisions_back_until_the_broker_says_so(tmp_path):
    """A partition's high watermark is the one of its last fetch: records a producer sent to it
    beside those just read from another partition may be on the broker already. It stops holding
    the complete time back only once an end-offset request sent after the latest input found it
    caught up; the request is made when that is what holds a day's decision back."""
    import asyncio
    import time

    import orjson
    from faust.types import TP

    from stream.service.churn import VERIFY_EVERY_S, build_service
    from stream.settings import Settings

    from ..engine.gen import DAY, T0, call

    s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "CHURNWATCH_DATA_DIR": str(tmp_path)})
    svc = build_service(s)
    a, b = TP(s.topic_calls, 0), TP(s.topic_calls, 1)
    old, new = T0 + 3 * DAY + 3600, T0 + 12 * DAY + 3600
    batch, _ = svc.engine.decode([orjson.dumps(call("8613800000001", new, "8613800000002"))])
    svc.engine.apply(batch)
    svc._recovered_once = True
    svc._behind = lambda: {a: 0, b: 0}  # both caught up as of their last fetches
    svc._tp_watermark.update({a: new, b: old})
    svc._processed_next.update({a: 40, b: 17})
    svc.step.decided = svc.step.due(old)
    svc._input_at = time.monotonic()  # a's records just arrived
    ends = {a: 40, b: 23}  # b holds 6 records the worker has not seen
    asked: list[list] = []

    async def end_offsets(tps):
        asked.append(sorted(tps))
        return {tp: ends[tp] for tp in tps}

    async def broker_away(tps):
        raise ConnectionError("no broker")

    svc._end_offsets = broker_away
    assert not asyncio.run(svc._verify_idle())  # no answer: b holds back, and no request again at once
    assert svc._complete_time() == old
    svc._end_offsets = end_offsets
    assert not asyncio.run(svc._verify_idle()) and not asked
    svc._verified_at -= VERIFY_EVERY_S
    assert svc._complete_time(fresh=False) == new  # (the rule before: b's last fetch said caught up)
    assert svc._complete_time() == old
    assert asyncio.run(svc._verify_idle()) and asked == [[a, b]]
    assert svc._complete_time() == old  # b is not caught up: it still holds time back
    ends[b] = 17
    assert asyncio.run(svc._verify_idle())
    assert svc._complete_time() == new  # both verified caught up after the latest input
    svc.step.decided = svc.step.due(new)
    svc._input_at = time.monotonic()  # more input: b holds back again; no day waits on it, so the
    assert svc._complete_time() == old  # broker is asked again only VERIFY_EVERY_S after the last time
    assert not asyncio.run(svc._verify_idle()) and len(asked) == 2
    svc._verified_at -= VERIFY_EVERY_S
    assert asyncio.run(svc._verify_idle()) and len(asked) == 3
    assert svc._complete_time() == new
    checks = {
        s.labels["result"]: s.value
        for f in svc.metrics.registry.collect()
        if f.name == "churnwatch_idle_checks"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert checks == {"failed": 2, "caught_up": 4, "behind": 1}  # (partitions, over the four requests)


def test_a_partition_is_reported_idle_to_the_other_workers_only_once_the_broker_said_so(tmp_path):
    """What a worker tells the others (its heartbeat): a partition caught up as of its last fetch
    holds their decisions back at this worker's complete time, not IDLE_TIME, until an end-offset
    request sent after the latest input found it caught up; the worker asks (at most once a
    second) even when no day of its own waits on it, and before it has read any event at all."""
    import asyncio
    import time

    from faust.types import TP

    from stream.service.churn import IDLE_TIME, VERIFY_EVERY_S, build_service
    from stream.settings import Settings

    from ..engine.gen import DAY, T0

    s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "CHURNWATCH_DATA_DIR": str(tmp_path)})
    svc = build_service(s)
    a, b = TP(s.topic_calls, 0), TP(s.topic_sms, 0)  # one input partition (0), two of its topics
    svc._recovered_once = True
    svc.active_partitions = lambda: {0}
    svc._behind = lambda: {a: 0, b: 0}  # both caught up as of their last fetches
    svc._processed_next.update({a: 40, b: 17})
    ends = {a: 40, b: 23}  # b holds 6 records the worker has not seen
    asked: list[list] = []

    async def end_offsets(tps):
        asked.append(sorted(tps))
        return {tp: ends[tp] for tp in tps}

    svc._end_offsets = end_offsets
    svc._input_at = time.monotonic()
    assert svc._report() is None  # nothing read, nothing verified: nothing to tell yet
    assert asyncio.run(svc._verify_idle()) and asked == [[a, b]]
    assert svc._report() is None  # b is behind: still nothing known
    ends[b] = 17
    svc._verified_at -= VERIFY_EVERY_S
    assert asyncio.run(svc._verify_idle())
    assert svc._report() == ({0: IDLE_TIME}, IDLE_TIME)  # verified caught up on every topic
    t = T0 + 5 * DAY
    svc._eval_time = t
    svc._input_at = time.monotonic()  # input arrived (the stale rule: idle as of the last fetch)
    assert svc._report() == ({0: t}, t)
    assert not asyncio.run(svc._verify_idle()) and len(asked) == 2  # once a second at most
    svc._verified_at -= VERIFY_EVERY_S
    assert asyncio.run(svc._verify_idle()) and len(asked) == 3
    assert svc._report() == ({0: IDLE_TIME}, t)
