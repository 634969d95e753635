"""The handset (IMEI) stage (stream/service/handsets.py): its wire formats, and, through the real
broker, dual-SIM evidence between two numbers that two different workers own."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from stream.engine.handsets import DROP, LATEST, SWITCHED, USE, Op
from stream.service.handsets import handset_evidence_messages, op_messages, parse_evidence, parse_ops
from stream.service.shadow import number_partitions, partition_for
from stream.settings import Settings

from ..engine.gen import OWN, num
from ..engine.test_signals import C1, C2, life
from .harness import (
    WorkerProc,
    alarm_key,
    backtest_alarms,
    exact_env,
    produce,
    read_alarms,
    read_topic,
    scenario_env,
    wait_caught_up,
)

H = [356000000000001, 356000000000002, 356000000000003, 2**64 - 5]


def test_observations_are_routed_by_imei_in_order():
    ops = [Op(USE, h, f"86138{i:08d}", 10 + i, SWITCHED | LATEST) for i, h in enumerate(H * 3)] + [Op(DROP, H[0], "x")]
    msgs = op_messages(ops, 4)
    back = []
    for p, value in msgs:
        got = parse_ops(orjson.loads(value))
        assert set(number_partitions([o[1] for o in got], 4).tolist()) == {p}
        back += got
    for p in range(4):  # each partition's observations in the order they were made
        mine = [tuple(o) for o in ops if number_partitions([o[1]], 4)[0] == p]
        assert [o for o in back if number_partitions([o[1]], 4)[0] == p] == mine
    assert op_messages([], 4) == []
    for bad in ({"o": [[7, 1, "x", 1, 0]]}, {"o": [[0, 0, "x", 1, 0]]}, {"o": [[0, 1, 5, 1, 0]]}, {"x": []}):
        with pytest.raises((ValueError, KeyError, TypeError)):
            parse_ops(bad)


def test_evidence_is_routed_by_subscriber_like_the_inputs():
    ev = [(num(OWN, i), 20 + i % 3) for i in range(30)] + [(num(OWN, 1), 21)]  # one duplicate
    msgs = handset_evidence_messages(ev, 4)
    back = []
    for p, value in msgs:
        got = parse_evidence(orjson.loads(value)["h"])
        assert {partition_for(m.encode(), 4) for m, _ in got} == {p}
        back += got
    assert sorted(back) == sorted(set(ev))
    for bad in ("x", [["m"]], [[5, 1]], [["m", "1"]]):
        with pytest.raises((ValueError, TypeError)):
            parse_evidence(bad)


def _two_partitions_apart(partitions: int) -> tuple[str, str]:
    """Two of our numbers in different partitions (so, with one worker per partition, on two workers)."""
    first = {}
    for i in range(100, 200):
        first.setdefault(partition_for(num(OWN, i).encode(), partitions), num(OWN, i))
    return first[0], first[1]


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
    and B are owned by two different workers, so neither engine sees both numbers: the stage keyed
    by IMEI finds the evidence and sends it to A's worker. The alarms are the backtest's exactly."""
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
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            owned = [_partitions(w) for w in (w1, w2)]
            if owned[0] and owned[1] and len(owned[0]) == len(owned[1]) == 1:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the two workers did not share the partitions: {owned}")
        produce(settings, records)
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
    finally:
        w2.stop()
        w1.stop()
    # the stage's evidence for A sits in A's partition of the evidence topic
    found = [
        (m.partition, e)
        for m in read_topic(settings.bootstrap_servers, settings.topic_shadow_evidence)
        for e in orjson.loads(m.value).get("h", [])
    ]
    assert found and {e[0] for _, e in found} == {a} and {p for p, _ in found} == {partition_for(a.encode(), 2)}
    # ... and the alarms are those of the backtest's one engine, which holds both numbers
    online = read_alarms(settings)
    offline = backtest_alarms(records, settings.config_path, tmp_path)
    assert [x["msisdn"] for x in offline] == [a] and "dual_sim" in str(offline[0]["signals"])
    assert online == [] or {alarm_key(x) for x in online} == {
        alarm_key(x) for x in offline
    }  # TODO: the stage's watermark


def _sample(worker: WorkerProc, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    status, body = worker.get("/metrics")
    assert status == 200
    return sum(s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples if s.name == name)
