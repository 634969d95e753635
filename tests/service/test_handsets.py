"""Handset (IMEI) evidence across workers (stream/service/handsets.py): the wire formats, and,
through the real broker, dual-SIM evidence between two numbers that two different workers own."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from stream.engine.handsets import LATEST, SWITCHED, Switch
from stream.service.churn import IDLE_TIME as IDLE
from stream.service.churn import TABLE_NAME
from stream.service.handsets import (
    SWITCH_PREFIX,
    heartbeat_messages,
    parse_newest,
    parse_switch_key,
    parse_switches,
    parse_times,
    switch_key,
    switch_messages,
)
from stream.service.shadow import partition_for
from stream.settings import Settings

from ..engine.gen import OWN, num
from ..engine.test_signals import C1, C2, life
from .harness import (
    WorkerProc,
    alarm_key,
    backtest_alarms,
    exact_env,
    produce,
    produce_by_day,
    read_alarms,
    read_topic,
    scenario_env,
    wait_caught_up,
)

H = [356000000000001, 356000000000002, 2**64 - 5]


def test_switches_and_times_go_to_every_partition_and_read_back():
    sws = [Switch(h, num(OWN, i), 10 + i, SWITCHED | LATEST, H[0]) for i, h in enumerate(H)] + [
        Switch(H[1], num(OWN, 9), 3, SWITCHED)
    ]
    msgs = switch_messages(sws, 4)
    assert [p for p, _ in msgs] == [0, 1, 2, 3]  # broadcast: every worker reads one
    for _, value in msgs:
        assert parse_switches(orjson.loads(value)["s"]) == sws
    assert switch_messages([], 4) == []
    beats = heartbeat_messages({3: 1_760_000_123.5, 1: 1_760_000_123.5}, 4)
    assert [p for p, _ in beats] == [0, 1, 2, 3]
    assert parse_times(orjson.loads(beats[0][1])["w"], 4) == [(1, 1_760_000_123.5), (3, 1_760_000_123.5)]
    assert "n" not in orjson.loads(beats[0][1])
    # with the newest event time the worker applied (a quiet worker follows it)
    beats = heartbeat_messages({1: IDLE}, 4, 1_760_000_200.0)
    assert parse_newest(orjson.loads(beats[2][1])["n"]) == 1_760_000_200.0
    for bad in ("1", None, True, float("nan")):
        with pytest.raises(ValueError):
            parse_newest(bad)
    for bad in ("x", [[0, "m", 1, 1, 0]], [[1, 5, 1, 1, 0]], [[1, "m", 1, 7, 0]], [[2**64, "m", 1, 1, 0]]):
        with pytest.raises((ValueError, TypeError)):
            parse_switches(bad)
    for bad in ("x", [[4, 1.0]], [[0, "1"]], [[0, float("inf")]], [[-1, 1.0]]):
        with pytest.raises((ValueError, TypeError)):
            parse_times(bad, 4)
    key = switch_key(H[2], num(OWN, 1))
    assert key.startswith(SWITCH_PREFIX) and parse_switch_key(key) == (H[2], num(OWN, 1))


def _two_partitions_apart(partitions: int) -> tuple[str, str]:
    """Two of our numbers in different partitions (so, with one worker per partition, on two workers)."""
    first = {}
    for i in range(100, 200):
        first.setdefault(partition_for(num(OWN, i).encode(), partitions), num(OWN, i))
    return first[0], first[1]


def _wait_shared(w1: WorkerProc, w2: WorkerProc) -> list[list[int]]:
    """Wait until each of the two workers owns one of the two partitions; returns them."""
    deadline = time.monotonic() + 120
    owned: list = []
    while time.monotonic() < deadline:
        owned = [_partitions(w) for w in (w1, w2)]
        if owned[0] and owned[1] and len(owned[0]) == len(owned[1]) == 1:
            return owned
        time.sleep(0.5)
    raise AssertionError(f"the two workers did not share the partitions: {owned}")


def _partitions(worker: WorkerProc) -> list[int] | None:
    status, body = worker.get("/healthz")
    if status != 200:
        return None
    h = orjson.loads(body)
    return None if h["recovering"] else h["partitions"]


@pytest.mark.kafka
@pytest.mark.slow
def test_handset_evidence_meets_numbers_on_different_workers(kafka_bootstrap, tmp_path):
    """A hands a handset down to B (B switches into the handset A used until the day before); A
    and B are owned by two different workers, so neither engine sees both numbers: B's worker
    broadcasts the switch, A's worker meets it with A, and decides A's days only once B's worker
    reported its time past them. The alarms are the backtest's exactly."""
    unique = uuid.uuid4().hex[:8]
    env = scenario_env(kafka_bootstrap, unique, tmp_path, partitions=2, **exact_env(tmp_path))
    settings = Settings.from_env(env)
    a, b = _two_partitions_apart(2)
    h1, h2, h3 = "356000000000001", "356000000000002", "356000000000003"
    events = life(a, 0, 30, C1, imei=h1) + life(a, 30, 10, C1, imei=h2, seed=3)
    events += life(b, 0, 31, C2, imei=h3, seed=2) + life(b, 31, 9, C2, imei=h1, seed=4)
    events.sort(key=lambda e: e["ts"])
    records = [("calls" if e["type"] == "call" else "sms", e["msisdn"].encode(), orjson.dumps(e)) for e in events]
    w1 = WorkerProc(env, "w1", tmp_path).start()
    w2 = WorkerProc(env, "w2", tmp_path).start()
    try:
        owned = _wait_shared(w1, w2)
        produce_by_day(settings, records)  # (A's days 29-30 on the broker before B's 31-32)
        wait_caught_up(settings, timeout_s=180, workers=[w1, w2], shadow=True)
        owner = {
            m: next(w for w, p in zip((w1, w2), owned, strict=True) if p == [partition_for(m.encode(), 2)])
            for m in (a, b)
        }
        assert owner[a] is not owner[b]
        status, body = owner[a].get(f"/subscribers/{a}")
        assert status == 200
        dual = next(s for s in orjson.loads(body)["signals"] if s["name"] == "dual_sim")
        assert dual["tripped"], dual
        got = [_sample(owner[m], "churnwatch_handset_evidence_total") for m in (a, b)]
        assert got[0] > 0 and got[1] == 0, got
        health = [orjson.loads(w.get("/healthz")[1]) for w in (w1, w2)]
        assert all(h["unreported_partitions"] == [] and h["peer_time"] is not None for h in health), health
        # a caught-up partition holds nobody back: four more days of A alone (B's worker idle)
        # are decided up to A's newest event, as one worker would
        more = life(a, 40, 4, C1, imei=h2, seed=5)
        produce(settings, [("calls" if e["type"] == "call" else "sms", a.encode(), orjson.dumps(e)) for e in more])
        newest = max(e["ts"] for e in more)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            h = orjson.loads(owner[a].get("/healthz")[1])
            if (h["decided_time"] or 0) >= newest:
                break
            time.sleep(0.5)
        assert h["decided_time"] >= newest, (h, newest)
        records += [("calls" if e["type"] == "call" else "sms", a.encode(), orjson.dumps(e)) for e in more]
        wait_caught_up(settings, timeout_s=60, workers=[w1, w2], shadow=True)
        # both workers restarted: each rebuilds from the table, other workers' switches included.
        # C (no handset before) first uses h1 on day 44, after B's switch into it on day 31: C's
        # evidence comes from B's switch, which C's worker now only has from the table
        for w in (w1, w2):
            w.stop()
        for w in (w1, w2):
            w.start()
        _wait_shared(w1, w2)
        c = num(OWN, 300)
        late = [
            ("calls" if e["type"] == "call" else "sms", c.encode(), orjson.dumps(e))
            for e in life(c, 44, 3, C2, imei=h1, seed=6)
        ]
        produce(settings, late)
        records += late
        wait_caught_up(settings, timeout_s=120, workers=[w1, w2], shadow=True)
        status, body = w1.get(f"/subscribers/{c}")
        assert status == 200
        dual = next(s for s in orjson.loads(body)["signals"] if s["name"] == "dual_sim")
        assert dual["tripped"], dual
        kept = [_sample(w, "churnwatch_handset_switches_kept") for w in (w1, w2)]
        assert kept[owner[a] is w2] >= 1, kept  # B's switch, kept by A's worker (A's, by B's)
        # three weeks on (another subscriber's days: event time moves on day by day, as it does
        # live), no decision can read the switches' evidence any more: forgotten, and deleted
        # from the table (a tombstone in the changelog), not kept for good
        # (all in one partition: the other worker, whose partitions are quiet, decides its
        # subscribers' days as these events move event time on, as one worker would)
        d = num(OWN, 301)
        later = [
            ("calls" if e["type"] == "call" else "sms", d.encode(), orjson.dumps(e))
            for e in life(d, 44, 21, C1, seed=7)
        ]
        produce(settings, later)
        records += later
        wait_caught_up(settings, timeout_s=120, workers=[w1, w2], shadow=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_sample(w, "churnwatch_handset_switches_kept") for w in (w1, w2)):
            time.sleep(0.5)
        assert [_sample(w, "churnwatch_handset_switches_kept") for w in (w1, w2)] == [0, 0]
        # ... and both workers decided up to the newest event (the quiet one follows the other's
        # heartbeats, up to HEARTBEAT_S later): the days the backtest decides, before they stop
        newest = max(orjson.loads(v)["ts"] for _, _, v in later)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            decided = [orjson.loads(w.get("/healthz")[1])["decided_time"] or 0 for w in (w1, w2)]
            if min(decided) >= newest:
                break
            time.sleep(0.5)
        assert min(decided) >= newest, (decided, newest)
    finally:
        w2.stop()
        w1.stop()
    last = {}
    for m in read_topic(settings.bootstrap_servers, f"{settings.app_id}-{TABLE_NAME}-changelog"):
        if m.key.startswith(SWITCH_PREFIX):
            last[(m.key, m.partition)] = m.value
    assert len(last) >= 3 and all(v is None for v in last.values()), last  # (B's in both, A's)
    # B's switch into A's old handset went to every partition of the evidence topic (A's, too)
    found = [
        (m.partition, sw)
        for m in read_topic(settings.bootstrap_servers, settings.topic_shadow_evidence)
        for sw in orjson.loads(m.value).get("s", [])
    ]
    assert {p for p, _ in found} == {0, 1} and {sw[1] for _, sw in found} == {a, b}  # (A moved to h2)
    assert {p for p, sw in found if sw[1] == b} == {0, 1}  # B switched once: into h1
    # ... and the alarms are those of the backtest's one engine, which holds both numbers
    online = read_alarms(settings)
    offline = backtest_alarms(records, settings.config_path, tmp_path)
    assert [x["msisdn"] for x in offline][0] == a and "dual_sim" in str(offline[0]["signals"])
    report = (
        sorted((x["msisdn"], x["phase"], x["event_time"]) for x in online),
        sorted((x["msisdn"], x["phase"], x["event_time"]) for x in offline),
    )
    # every record, C's included: the restart decides the last decided day again (a crash may have
    # cut it short), and C, first seen after it, is not eligible for it (its evidence, dated B's
    # switch, waits for C's first day: Engine.decide_candidates)
    assert {alarm_key(x) for x in online} == {alarm_key(x) for x in offline}, report


def _sample(worker: WorkerProc, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    status, body = worker.get("/metrics")
    assert status == 200
    return sum(s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples if s.name == name)
