"""The second-SIM join through Kafka: contacts keyed by competitor number, LSH bands keyed by band
hash, evidence keyed by subscriber, on the real broker; the service agrees with the in-process
backtest of the same events."""

from __future__ import annotations

import uuid

import orjson
import pytest

from stream.engine import Engine
from stream.settings import Settings

from ..engine.helpers import quiet_config
from ..engine.test_shadow import L1, L2, S, X, _operator, _run
from .harness import WorkerProc, produce_live, read_alarms, read_topic, scenario_env, wait_caught_up

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _flagged(alarms) -> dict[str, set[str]]:
    """msisdn -> masked shadow peers in its alarm records' dual_sim details."""
    out: dict[str, set[str]] = {}
    for a in alarms:
        for s in a["signals"]:
            if s["name"] == "dual_sim" and "detail" in s:
                out.setdefault(a["msisdn"], set()).add(s["detail"]["shadow_peer"])
    return out


def test_second_sim_found_through_kafka_and_agrees_with_the_backtest(kafka_bootstrap, tmp_path):
    unique = uuid.uuid4().hex[:8]
    env = scenario_env(kafka_bootstrap, unique, tmp_path, partitions=4)
    settings = Settings.from_env(env)
    events = _operator()
    records = [("calls", e["msisdn"].encode(), orjson.dumps(e)) for e in events]
    worker = WorkerProc(env, "w", tmp_path).start()
    try:
        produce_live(settings, records, chunks=6, workers=[worker])
        wait_caught_up(settings, timeout_s=120, workers=[worker], shadow=True)
        views = {}
        for m in (S, L1, L2):
            status, body = worker.get(f"/subscribers/{m}")
            assert status == 200
            views[m] = orjson.loads(body)
    finally:
        worker.stop()
    # the join's outcome, once every stage has settled: S's second SIM is X (masked), nobody else's
    dual = {m: next(s for s in v["signals"] if s["name"] == "dual_sim") for m, v in views.items()}
    assert (
        dual[S]["tripped"] and dual[S]["detail"]["shadow_peer"].endswith(X[-4:]) and X[2:] not in str(dual[S]["detail"])
    )
    assert not dual[L1]["tripped"] and not dual[L2]["tripped"]
    alarms = read_alarms(settings)
    got = _flagged(alarms)
    # records are sent when the phase rises, so whether one carries the detail depends on when the
    # evidence arrived; a record never names a shadow for anyone but S
    assert set(got) <= {S} and all(p.endswith(X[-4:]) for p in got.get(S, ()))
    assert not [a for a in alarms if a["msisdn"] in (L1, L2)]
    # the routing: every contact record sits in its competitor number's partition, every evidence
    # record in its subscriber's, the same partition as the subscriber's input events
    from stream.service.shadow import number_partitions, partition_for

    contacts = read_topic(settings.bootstrap_servers, settings.topic_shadow_contacts)
    xs = []
    for m in contacts:
        env = orjson.loads(m.value)
        if "mark" in env:  # (the join's barrier: the sources' decided days)
            continue
        assert set(number_partitions(env["x"], settings.partitions).tolist()) == {m.partition}
        xs += env["x"]
    assert int(X[2:]) in xs
    evidence = read_topic(settings.bootstrap_servers, settings.topic_shadow_evidence)
    subs = []
    for m in evidence:
        for ev in orjson.loads(m.value).get("e", []):  # (also the handset stage's envelopes: "h", "w")
            assert partition_for(ev["s"].encode(), settings.partitions) == m.partition
            subs.append(ev["s"])
    assert S in subs
    inputs = [m for m in read_topic(settings.bootstrap_servers, settings.topic_calls) if m.key == S.encode()]
    assert {m.partition for m in inputs} == {partition_for(S.encode(), settings.partitions)}
    # the backtest's in-process join reaches the same outcome: the same shadow, the same Jaccard
    eng, bt_alarms, _ = _run(Engine, quiet_config(), events)
    bt_dual = {m: next(s for s in eng.view(m)["signals"] if s["name"] == "dual_sim") for m in (S, L1, L2)}
    assert {m: (d["tripped"], d.get("detail")) for m, d in bt_dual.items()} == {
        m: (d["tripped"], d.get("detail")) for m, d in dual.items()
    }
    assert set(_flagged(bt_alarms)) <= {S}
