"""Parts of the worker tested without a broker: the batch path's fetched records
(``faust_adapter._RawPartitionRecords``: aiokafka's own record objects for the input topics, the
same offsets, keys and values as aiokafka's ``ConsumerRecord`` s, and the fetch position kept
record by record; record batches built in memory), and the state table's watermark items."""

from __future__ import annotations

import struct
from itertools import islice

import orjson
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


def test_a_watermark_item_records_the_offsets_its_checkpoint_commits_and_a_recovery_checks_them():
    """A recovery whose state table does not cover the committed input offsets (a changelog read
    short) is refused; one that covers them, or an item of an earlier release, passes."""
    from stream.service.churn import (
        _DECIDED,
        _NOFF,
        _OFF,
        _WM,
        NO_DECIDED,
        parse_watermark,
        recovery_gaps,
        watermark_offsets,
    )

    item = _WM.pack(float("nan")) + _DECIDED.pack(NO_DECIDED) + _NOFF.pack(2) + _OFF.pack(0, 120) + _OFF.pack(2, 7)
    assert parse_watermark(item) == (None, None)  # before any decision
    assert watermark_offsets(item) == {0: 120, 2: 7}
    assert watermark_offsets(_WM.pack(1.0) + _DECIDED.pack(20_475)) is None  # written before the offsets were
    recorded = {0: {0: 120, 2: 7}, 1: None}
    # covered: committed at or below what the table records; partition 1's item cannot tell
    assert recovery_gaps({(0, 0): 120, (0, 2): 5, (0, 1): None, (1, 0): 999}, recorded) == []
    # the table's item is older than the commit, or records nothing of a source committed
    assert recovery_gaps({(0, 0): 121}, recorded) == [(0, 0, 121, 120)]
    assert recovery_gaps({(0, 1): 3}, recorded) == [(0, 1, 3, None)]
    # no item at all in a partition with offsets committed (its changelog partition read as empty)
    assert recovery_gaps({(2, 0): 10, (3, 0): 0, (3, 1): None}, recorded) == [(2, 0, 10, None)]


def _counts(svc, family: str, label: str) -> dict:
    """A counter family's totals by one label, from the service's registry."""
    return {
        smp.labels[label]: smp.value
        for f in svc.metrics.registry.collect()
        if f.name == family
        for smp in f.samples
        if smp.name.endswith("_total")
    }


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
    checks = _counts(svc, "churnwatch_idle_checks", "result")
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


def test_the_join_barrier_marks_gate_on_every_source_and_keep_the_latest():
    """The second-SIM join's barrier marks (stream/service/shadow.py): a gate is known once every
    source reported on every partition read; it is the least mark; a source's latest mark counts
    (a restarted worker's lower day holds the join back again); malformed marks are refused."""
    from stream.service.shadow import IDLE_DAY, Marks, mark_messages, parse_mark

    marks = Marks(3)
    marks.note(0, [(0, 10), (1, 12)])
    assert marks.gate([0]) is None  # source 2 has not reported on partition 0
    marks.note(0, [(2, 11)])
    assert marks.gate([0]) == 10
    assert marks.gate([0, 1]) is None  # nothing read on partition 1 yet
    marks.note(1, [(0, 14), (1, 14), (2, IDLE_DAY)])
    assert marks.gate([0, 1]) == 10 and marks.gate([1]) == 14
    marks.note(1, [(0, 9)])  # the latest, not the highest
    assert marks.gate([0, 1]) == 9
    msgs = mark_messages(1, {3: 20, 1: 20}, 4)
    assert [p for p, _ in msgs] == [0, 1, 2, 3]  # to every partition of the next stage
    assert parse_mark(orjson.loads(msgs[0][1]), 4) == (1, [(1, 20), (3, 20)])
    for bad in (
        {"mark": 3, "at": []},
        {"mark": True, "at": []},
        {"mark": 0, "at": [[4, 1]]},
        {"mark": 0, "at": [[0, 1.5]]},
        {"mark": 0, "at": [[0, IDLE_DAY + 1]]},
        {"mark": 0, "at": {"0": 1}},
    ):
        with pytest.raises((ValueError, TypeError)):
            parse_mark(bad, 4)


def _barrier_service(tmp_path, partitions: int = 2):
    from stream.service.churn import build_service
    from stream.settings import Settings

    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "CHURNWATCH_DATA_DIR": str(tmp_path),
            "CHURNWATCH_PARTITIONS": str(partitions),
        }
    )
    return build_service(s)


def test_a_day_is_decided_only_once_the_join_answered_the_day_before(tmp_path):
    """Decisions wait for the second-SIM join (the backtest confirms the evidence of day D's
    publications before it decides D + 1): until every bands partition's mark reached each of the
    worker's evidence partitions nothing is decided; then at most the day after the least mark."""
    from stream.service.shadow import IDLE_DAY

    from ..engine.gen import DAY, T0

    svc = _barrier_service(tmp_path)
    svc._recovered_once = True
    svc.active_partitions = lambda: {0, 1}
    c = T0 + 30 * DAY + 0.75 * DAY  # this worker's complete time: day 30 of T0 is due
    svc._advance_eval_time = lambda: c
    svc._peer_time.update({0: c, 1: c})
    svc.step.decided = svc.step.due(T0 + 20 * DAY + 0.75 * DAY)
    first = svc.step.decided
    assert svc._decision_time() is None  # the join has not answered: nothing is decided
    svc._shadow_marks.note(0, [(0, first), (1, first)])
    assert svc._decision_time() is None and svc.health()["shadow_day"] is None  # partition 1 not yet
    svc._shadow_marks.note(1, [(0, first + 3), (1, first)])
    t = svc._decision_time()
    assert svc.step.due(t) == first + 1 and t < c  # the day after the join's, no further
    assert svc.health()["shadow_day"] == first
    svc._shadow_marks.note(0, [(0, first + 4), (1, first + 4)])
    svc._shadow_marks.note(1, [(0, first + 4), (1, first + 4)])
    assert svc.step.due(svc._decision_time()) == first + 5
    svc._shadow_marks.note(0, [(0, IDLE_DAY), (1, IDLE_DAY)])
    svc._shadow_marks.note(1, [(0, IDLE_DAY), (1, IDLE_DAY)])
    assert svc._decision_time() == c  # an idle join holds nothing back
    # the alignment: events are applied no further than the window past what decisions may follow
    svc._shadow_marks.note(1, [(0, first)])
    assert svc._align_limit() <= svc._shadow_cap() + svc._peer_window


def _stage_one(tmp_path):
    """A worker's stage 1 of the join over two partitions, its sends and table writes recorded
    (sent: [(topic, [envelope, ...])], written: {key: (partition, payload or None)})."""
    svc = _barrier_service(tmp_path)
    st = svc.shadow
    sent: list = []
    written: dict = {}

    async def send_routed(topic, envelopes, stage):
        sent.append((topic, [orjson.loads(v) for _, v in envelopes]))
        return []

    async def write(table, items):
        written.update(items)
        return []

    st._owned = lambda topic: [0, 1]
    st.send_routed = send_routed
    st._write = write
    return svc, st, sent, written


def test_stage_one_publishes_a_day_with_the_contacts_of_the_days_before_and_holds_the_later_ones(tmp_path):
    """Stage 1 of the join publishes as of a day once every source marked it, having observed
    every contact of the days before it and none later, whatever order they come in (as the
    backtest's ShadowJoin): a worker applies events ahead of its decisions, so later contacts are
    held (in the table: written when held, deleted when observed) until their day is published.
    (``contacts(x, epoch)``: contacts of day ``epoch - 1``, first in the publication as of ``epoch``.)"""
    import asyncio
    from types import SimpleNamespace

    from stream.service.shadow import HOLD_PREFIX, mark_messages

    svc, st, sent, written = _stage_one(tmp_path)
    topic = svc.settings.topic_shadow_contacts
    day = 20_000
    offsets = iter(range(1000))

    def contacts(x: int, epoch: int, part: int):
        env = {"x": [x] * 3, "m": [13800000001, 13800000002, 13800000003], "d": [epoch - 1] * 3}
        return SimpleNamespace(value=orjson.dumps(env), partition=part, topic=topic, offset=next(offsets))

    def mark(d: int, part: int):
        value = mark_messages(0, {0: d, 1: d}, 2)[part][1]
        return SimpleNamespace(value=value, partition=part, topic=topic, offset=next(offsets))

    def published() -> dict[int, int]:
        out = {rec["x"]: rec["day"] for t, envs in sent for env in envs for _, rec in env.get("e", [])}
        sent.clear()
        return out

    X1, X2, X3 = 15900000001, 15900000002, 15900000003
    # partition 0: X1 of the day's epoch, the mark, X2 of the next, X3 three days ahead -- all read
    # before partition 1's mark, which completes the gate
    batch = [contacts(X1, day, 0), mark(day, 0), contacts(X2, day + 1, 0), contacts(X3, day + 3, 0), mark(day, 1)]
    asyncio.run(st.process_contacts(batch))
    marks = [env for t, envs in sent if t == svc.settings.topic_shadow_bands for env in envs if "mark" in env]
    assert marks == [{"mark": 1, "at": [[0, day], [1, day]]}] * 2  # behind the publications, to both
    assert published() == {X1: day}
    assert st.peers.get(X2) is not None and st.peers.get(X3) is None  # X2 observed after; X3 held
    held = [k for k, v in written.items() if k.startswith(HOLD_PREFIX) and v[1] is not None]
    assert len(held) == 1 and orjson.loads(written[held[0]][1])["x"] == [X3] * 3
    asyncio.run(st.process_contacts([mark(day + 1, 0), mark(day + 1, 1)]))
    assert published() == {X2: day + 1} and st.peers.get(X3) is None
    asyncio.run(st.process_contacts([mark(day + 2, 1), mark(day + 2, 0)]))
    assert st.peers.get(X3) is not None and written[held[0]][1] is None  # observed, and deleted
    assert published() == {}  # (X3 is published as of its own day, after the day before)
    asyncio.run(st.process_contacts([mark(day + 3, 1), mark(day + 3, 0)]))
    assert published() == {X3: day + 3}


def test_stage_one_releases_held_contacts_of_a_number_that_expired_meanwhile(tmp_path):
    """A competitor number unseen for shadow_expire_days expires at a publication while later
    contacts of it are held: released, they make it anew, written to its partition (a bench run
    of 2026-12-07 had stage 1 exit on a KeyError there)."""
    import asyncio
    from types import SimpleNamespace

    from stream.service.shadow import mark_messages

    svc, st, _, written = _stage_one(tmp_path)
    topic = svc.settings.topic_shadow_contacts
    X, day = 15900000009, 20_000
    late = day + svc.engine_config.shadow_expire_days + 5

    def msg(env, part=1):
        return SimpleNamespace(value=orjson.dumps(env), partition=part, topic=topic, offset=len(written))

    def mark(d):
        return [
            SimpleNamespace(value=v, partition=p, topic=topic, offset=0) for p, v in mark_messages(0, {0: d, 1: d}, 2)
        ]

    asyncio.run(st.process_contacts(mark(day)))
    asyncio.run(st.process_contacts([msg({"x": [X], "m": [13800000001], "d": [day]})]))
    assert st.peers.get(X) is not None
    asyncio.run(st.process_contacts([msg({"x": [X], "m": [13800000002], "d": [late]})]))
    asyncio.run(st.process_contacts(mark(late - 4)))  # X expires (unseen since `day`); its later contact held
    assert st.peers.get(X) is None and written[str(X).encode()][1] is None
    asyncio.run(st.process_contacts(mark(late)))  # released: X anew, in its partition
    assert st.peers.get(X)["last"] == late and written[str(X).encode()][0] == 1


def test_after_a_recovery_each_input_partition_resumes_where_the_recovery_says(tmp_path):
    """After a recovery every input partition starts at its committed offset, or at its log's
    start without a commit, known from the recovery itself. The consumer's position is not asked:
    a fetch under way, or one dropped around the recovery, has moved it past records that were
    never processed (they were then cut as already seen: 8,155-8,630 of 1.2M events lost so). A
    first fetch that starts past the resume offset is dropped and the partition sought back."""
    import asyncio
    from types import SimpleNamespace

    from faust.types import TP

    from stream.service.churn import build_service
    from stream.settings import Settings

    s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "CHURNWATCH_DATA_DIR": str(tmp_path)})
    svc = build_service(s)
    calls0, calls1, sms0 = TP(s.topic_calls, 0), TP(s.topic_calls, 1), TP(s.topic_sms, 0)
    src = {t: i for i, t in enumerate(s.input_topics)}
    sought: list[tuple[TP, int]] = []

    class Consumer:
        starts = {calls1: 7, sms0: 0}

        async def earliest_offsets(self, *tps):
            return {tp: self.starts[tp] for tp in tps}

        def assignment(self):
            return {calls0, calls1, sms0}

        async def position(self, tp):
            return 500  # past what was fetched and dropped

        async def seek(self, tp, offset):
            sought.append((tp, offset))

    svc.app = SimpleNamespace(consumer=Consumer())
    committed = {(0, src[s.topic_calls]): 120, (1, src[s.topic_calls]): None, (0, src[s.topic_sms]): None}
    resume = asyncio.run(svc._resume_offsets(committed))
    assert resume == {calls0: 120, calls1: 7, sms0: 0}

    async def away(*tps):
        raise ConnectionError("no broker")

    svc.app.consumer.earliest_offsets = away
    assert asyncio.run(svc._resume_offsets(committed)) == {calls0: 120, calls1: 0, sms0: 0}  # (from 0)

    svc._processed_next.update(resume)  # as _rebuild sets them
    svc._resume_at = dict(resume)

    def recs(first, n=3):
        return [SimpleNamespace(offset=o) for o in range(first, first + n)]

    got = asyncio.run(svc._resume_check({calls0: recs(150), sms0: recs(0)}))
    assert set(got) == {sms0} and sought == [(calls0, 120)]  # calls0 started past its commit
    asyncio.run(svc._learn_positions(got))
    assert svc._processed_next == {calls0: 120, calls1: 7, sms0: 0}  # never the consumer's 500
    assert [r.offset for r in svc._contiguous(calls1, recs(7))] == [7, 8, 9]  # nothing cut
    assert _counts(svc, "churnwatch_input_offset_gaps", "topic") == {s.topic_calls: 1}
