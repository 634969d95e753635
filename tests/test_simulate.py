"""The simulator: determinism, ground-truth consistency, the contract, arrival order, Kafka sink."""

from __future__ import annotations

import asyncio
import collections
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from stream.tools import simulate
from stream.tools.simulate import DAY_S, generate, simulation_start_ts

N, DAYS, SEED = 1500, 70, 11
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@pytest.fixture(scope="module")
def sim():
    lines_it, truth = generate(N, DAYS, SEED, malformed_rate=0)  # malformed lines: own test
    lines = list(lines_it)
    events = [orjson.loads(ln) for ln in lines]
    return lines, events, [], truth


def _by(truth, archetype):
    return [r for r in truth if r["archetype"] == archetype]


def test_deterministic_for_a_seed():
    def digest(seed):
        it, truth = generate(200, 30, seed)
        h = hashlib.sha256()
        for ln in it:
            h.update(ln + b"\n")
        h.update(json.dumps(truth, sort_keys=True).encode())
        return h.hexdigest()

    assert digest(5) == digest(5)
    assert digest(5) != digest(6)


def test_archetype_mix_is_exact_and_truth_is_consistent(sim):
    _, _, _, truth = sim
    counts = collections.Counter(r["archetype"] for r in truth)
    assert counts == {
        "loyal": 1200,
        "switcher": 90,
        "silent_porter": 45,
        "seasonal_migrant": 60,
        "drifter": 45,
        "prepaid_lapser": 60,
    }
    assert len({r["msisdn"] for r in truth}) == N
    start = simulation_start_ts()
    for r in truth:
        assert r["msisdn"].startswith("86") and len(r["msisdn"]) == 13
        churner = r["archetype"] in simulate.CHURN_ARCHETYPES
        assert (r["churn_day"] != "") == churner
        if churner:
            assert DAYS // 2 <= r["churn_day"] < DAYS
            assert r["churn_ts"] == start + r["churn_day"] * DAY_S
        assert (r["stop_day"] != "") == (r["archetype"] == "silent_porter")
        if r["archetype"] == "silent_porter":
            assert r["stop_day"] == r["churn_day"]
        assert (r["second_sim"] != "") == (r["archetype"] == "switcher")
        if r["archetype"] == "prepaid_lapser":
            assert r["plan"] == "prepaid"


def _own_events(events):
    per = collections.defaultdict(list)
    for e in events:
        per[e.get("msisdn")].append(e)
    return per


def test_ninety_days_have_a_35_day_baseline():
    _, truth = generate(400, 90, 1)
    churn = [r["churn_day"] for r in truth if r["churn_day"] != ""]
    assert min(churn) >= 49 and max(churn) <= 88  # second half, and precursors start on day 35 at the earliest
    for r in truth:
        notes = _notes(r)
        for k in ("ramp_start", "decay_from"):
            if k in notes:
                assert int(notes[k]) >= 35
        if "quiet" in notes:
            assert int(notes["quiet"].split("-")[0]) >= 35
        if r["archetype"] == "prepaid_lapser":  # the missed recharge falls after the baseline
            assert int(notes["last_recharge"]) + int(notes["recharge_every"]) >= 35 - 1


def test_churners_are_silent_from_their_churn_day(sim):
    _, events, _, truth = sim
    per = _own_events(events)
    for r in truth:
        if r["churn_ts"] == "":
            continue
        evs = per[r["msisdn"]]
        assert evs, r
        assert max(e["ts"] for e in evs) < r["churn_ts"], r["archetype"]
        # and they were active during the baseline
        assert sum(1 for e in evs if e["ts"] < simulation_start_ts() + 20 * DAY_S and e["type"] in ("call", "sms")) > 10


def test_silent_porters_stop_abruptly(sim):
    _, events, _, truth = sim
    per = _own_events(events)
    start = simulation_start_ts()
    for r in _by(truth, "silent_porter"):
        days = collections.Counter((e["ts"] - start) // DAY_S for e in per[r["msisdn"]] if e["type"] in ("call", "sms"))
        stop = r["stop_day"]
        before = sum(days[d] for d in range(stop - 7, stop)) / 7
        assert before > 1.0  # still normal in the last week
        assert all(d < stop for d in days)


def test_switchers_dial_a_rival_hotline_and_a_shadow_takes_over(sim):
    _, events, _, truth = sim
    per = _own_events(events)
    switchers = _by(truth, "switcher")
    dialled = 0
    shadow_seen = 0
    shadows = {r["second_sim"]: r for r in switchers}
    shadow_in = collections.Counter(e["peer"] for e in events if e.get("peer") in shadows and e["direction"] == "in")
    for r in switchers:
        hot = [
            e
            for e in per[r["msisdn"]]
            if e["type"] == "call" and e["direction"] == "out" and e["peer"] in ("10010", "10000")
        ]
        if "hotline=" in r["notes"]:
            assert hot and all(e["ts"] < r["churn_ts"] for e in hot)
            rival = dict(kv.split("=", 1) for kv in r["notes"].split(";"))["rival"]
            assert {e["peer"] for e in hot} == {"10010" if rival == "cu" else "10000"}
            dialled += 1
        else:
            assert not hot
        shadow_seen += shadow_in[r["second_sim"]] > 0
        assert r["second_sim"][2:5] not in ("134", "135", "136", "137", "138", "139")  # a cu/ct number
    assert dialled >= 0.8 * len(switchers)
    assert shadow_seen >= 0.8 * len(switchers)  # the shadow reaches the contacts we carry


def test_switchers_traffic_decays_and_competitor_share_rises(sim):
    _, events, _, truth = sim
    per = _own_events(events)
    start = simulation_start_ts()
    early = late = 0
    comp_early = comp_late = 0
    for r in _by(truth, "switcher"):
        C = r["churn_day"]
        for e in per[r["msisdn"]]:
            if e["type"] != "call" or e["direction"] != "out":
                continue
            d = (e["ts"] - start) // DAY_S
            comp = e.get("peer_operator") in ("cu", "ct")
            if d < 20:
                early += 1
                comp_early += comp
            elif C - 7 <= d < C:
                late += 1
                comp_late += comp
    assert (late - comp_late) / 7 < 0.5 * (early - comp_early) / 20  # traffic on our network decays
    assert late / 7 < 0.7 * early / 20
    assert comp_late / late > comp_early / early  # competitor share rises


def test_seasonal_migrants_go_quiet_and_come_back(sim):
    _, events, _, truth = sim
    per = _own_events(events)
    start = simulation_start_ts()
    back_ratios = []
    for r in _by(truth, "seasonal_migrant"):
        q = dict(kv.split("=", 1) for kv in r["notes"].split(";"))["quiet"]
        q0, q1 = map(int, q.split("-"))
        assert 21 <= q1 - q0 + 1 <= 35
        days = collections.Counter((e["ts"] - start) // DAY_S for e in per[r["msisdn"]] if e["type"] in ("call", "sms"))
        base = sum(days[d] for d in range(0, q0)) / q0
        quiet = sum(days[d] for d in range(q0, q1 + 1)) / (q1 - q0 + 1)
        after = [days[d] for d in range(q1 + 1, DAYS)]
        assert quiet < 0.2 * base
        assert after and sum(after) / len(after) > 0.25 * base  # back
        back_ratios.append(sum(after) / len(after) / base)
    assert np.median(back_ratios) > 0.7


def test_prepaid_lapsers_stop_recharging(sim):
    _, events, _, truth = sim
    per = _own_events(events)
    start = simulation_start_ts()
    for r in _by(truth, "prepaid_lapser"):
        notes = dict(kv.split("=", 1) for kv in r["notes"].split(";"))
        last = int(notes["last_recharge"])
        rch = sorted((e["ts"] - start) // DAY_S for e in per[r["msisdn"]] if e["type"] == "recharge")
        if last >= 0:
            assert rch and rch[-1] == last
        assert r["churn_day"] - last >= int(notes["recharge_every"]) + 5


def _notes(r):
    return dict(kv.split("=", 1) for kv in r["notes"].split(";") if kv)


def test_loyal_holidays_and_handsets(sim):
    _, events, _, truth = sim
    per = _own_events(events)
    start = simulation_start_ts()
    loyal = _by(truth, "loyal")
    holiday = [r for r in loyal if "holiday" in _notes(r)]
    changers = [r for r in loyal if "handset_change" in _notes(r)]
    assert 0.06 * len(loyal) < len(holiday) < 0.14 * len(loyal)
    assert 0.02 * len(loyal) < len(changers) < 0.08 * len(loyal)
    for r in holiday:
        h0, h1 = map(int, _notes(r)["holiday"].split("-"))
        days = collections.Counter((e["ts"] - start) // DAY_S for e in per[r["msisdn"]] if e["type"] in ("call", "sms"))
        assert 5 <= h1 - h0 + 1 <= 9
        before = sum(days[d] for d in range(0, h0)) / max(h0, 1)
        assert sum(days[d] for d in range(h0, h1 + 1)) / (h1 - h0 + 1) < 0.3 * before + 0.5
        assert sum(days[d] for d in range(h1 + 1, DAYS)) > 0  # back
    for r in changers:
        cd = int(_notes(r)["handset_change"])
        old_imeis = {e["imei"] for e in per[r["msisdn"]] if "imei" in e and (e["ts"] - start) // DAY_S < cd}
        new_imeis = {e["imei"] for e in per[r["msisdn"]] if "imei" in e and (e["ts"] - start) // DAY_S >= cd}
        assert len(old_imeis) <= 1 and len(new_imeis) <= 1 and not (old_imeis & new_imeis)
    # hand-downs: the donor's old IMEI later shows up with another of our numbers
    imei_users = collections.defaultdict(set)
    for e in events:
        if "imei" in e:
            imei_users[e["imei"]].add(e["msisdn"])
    by_msisdn = {r["msisdn"]: r for r in truth}
    shared = [users for users in imei_users.values() if len(users) > 1]
    assert shared
    for users in shared:
        notes = " ".join(by_msisdn[u]["notes"] for u in users)
        assert "handdown" in notes or "dual_own_sim" in notes
    sw = _by(truth, "switcher")
    assert sum("handdown_to" in r["notes"] for r in sw) <= 0.2 * len(sw)  # IMEI evidence is rare for switchers


def test_own_to_own_calls_have_both_cdrs(sim):
    _, events, _, truth = sim
    ours = {r["msisdn"] for r in truth}
    outs = collections.Counter()
    ins = collections.Counter()
    for e in events:
        if e.get("type") == "call" and e["peer"] in ours and e["msisdn"] in ours:
            k = (
                (e["msisdn"], e["peer"], e["ts"], e["duration_s"])
                if e["direction"] == "out"
                else (e["peer"], e["msisdn"], e["ts"], e["duration_s"])
            )
            (outs if e["direction"] == "out" else ins)[k] += 1
    assert len(outs) > 1000
    # every "in" between two of ours has its "out"; nearly every "out" its "in" (ported peers lack it)
    assert not (ins - outs)
    assert sum((outs - ins).values()) < 0.05 * sum(outs.values())


def test_contact_circles_are_concentrated(sim):
    _, events, _, truth = sim
    per_peer = collections.defaultdict(collections.Counter)
    for e in events:
        if e.get("type") == "call" and e["direction"] == "out":
            per_peer[e["msisdn"]][e["peer"]] += 1
    top3 = [
        sum(c for _, c in cnt.most_common(3)) / sum(cnt.values()) for cnt in per_peer.values() if sum(cnt.values()) > 50
    ]
    assert np.median(top3) > 0.4  # most traffic goes to a few close contacts
    sizes = [len(cnt) for cnt in per_peer.values()]
    assert max(sizes) > 3 * np.median(sizes)  # heavy-tailed circle sizes


def test_events_per_active_subscriber_day_is_realistic(sim):
    _, events, _, truth = sim
    n_cs = sum(1 for e in events if e.get("type") in ("call", "sms"))
    assert 4 <= n_cs / (N * DAYS) <= 15
    profiles = [e for e in events if e.get("type") == "profile"]
    assert len({p["msisdn"] for p in profiles}) == N
    assert all(e.get("type") == "profile" for e in events[:N])  # the start-of-period profiles come first


def test_daily_and_weekly_rhythms(sim):
    _, events, _, _ = sim
    start = simulation_start_ts()  # local midnight of a Monday
    ts = np.array([e["ts"] for e in events if e["type"] in ("call", "sms")])
    hour = ((ts - start) % DAY_S) // 3600
    weekday = ((ts - start) // DAY_S) % 7
    night = np.isin(hour, [2, 3, 4]).mean()
    evening = np.isin(hour, [19, 20]).mean()
    assert night < 0.02 and evening > 0.08
    per_weekday = np.bincount(weekday, minlength=7) / np.bincount(np.arange(DAYS) % 7, minlength=7)
    assert per_weekday[:5].mean() > 1.05 * per_weekday[6]  # quieter Sundays


def _check_event(e: dict) -> None:
    t = e["type"]
    assert isinstance(e["msisdn"], str) and e["msisdn"].isdigit() and len(e["msisdn"]) == 13
    assert isinstance(e["ts"], int) and not isinstance(e["ts"], bool) and e["ts"] > 1.7e9
    if t in ("call", "sms"):
        assert e["direction"] in ("out", "in")
        assert isinstance(e["peer"], str) and e["peer"].isdigit()
        if "peer_operator" in e:
            assert e["peer_operator"] in ("own", "cu", "ct")
    if t == "call":
        assert isinstance(e["duration_s"], int) and e["duration_s"] >= 0
        if "imei" in e:
            assert len(e["imei"]) == 15 and e["imei"].isdigit()
    elif t == "recharge":
        assert e["amount"] > 0
    elif t == "profile":
        assert e["plan"] in ("prepaid", "postpaid")
        assert isinstance(e["arpu"], float) and isinstance(e["key_group_member"], bool)
    else:
        assert t == "sms"


def test_every_wellformed_event_follows_the_contract(sim):
    _, events, _, _ = sim
    for e in events:
        _check_event(e)
    if (SCHEMAS / "event.schema.json").exists():
        jsonschema = pytest.importorskip("jsonschema")
        from referencing import Registry, Resource

        schemas = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}
        registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
        validators = {
            t: jsonschema.Draft202012Validator(schemas[f"{t}.schema.json"], registry=registry)
            for t in ("call", "sms", "recharge", "profile")
        }
        rng = np.random.default_rng(0)
        sample = [events[i] for i in rng.choice(len(events), 4000, replace=False)]
        for t in ("call", "sms", "recharge", "profile"):  # every kind at least a few times
            sample += [e for e in events if e.get("type") == t][:50]
        for e in sample:
            errs = list(validators[e["type"]].iter_errors(e)) if e.get("type") in validators else ["type"]
            assert not errs, (e, errs)


def test_arrival_order_has_late_events(sim):
    _, events, _, _ = sim
    ts = np.array([e["ts"] for e in events if isinstance(e.get("ts"), int)])
    run_max = np.maximum.accumulate(ts)
    lag = run_max - ts
    assert (lag > 0).mean() > 0.05  # out of order
    assert (lag > 3600).mean() > 0.005  # hours late
    assert (lag <= 300).mean() > 0.8  # mostly near-real-time
    assert lag.max() < 40 * 3600


def test_malformed_fraction_is_honoured():
    lines, _ = generate(300, 20, 3, malformed_rate=0.01)
    lines = list(lines)
    bad = 0
    for ln in lines:
        try:
            _check_event(orjson.loads(ln))
        except (orjson.JSONDecodeError, AssertionError, KeyError, TypeError):
            bad += 1
    assert 0.006 < bad / len(lines) < 0.014
    lines0, _ = generate(300, 20, 3, malformed_rate=0)
    for ln in lines0:
        _check_event(orjson.loads(ln))


def test_dict_and_records_formats():
    evs, _ = generate(50, 5, 1, fmt="dict", malformed_rate=0.05)
    evs = list(evs)
    assert any(isinstance(e, bytes) for e in evs) and any(isinstance(e, dict) for e in evs)
    recs, _ = generate(50, 5, 1, fmt="records", malformed_rate=0.05)
    for kind, key, value in recs:
        assert kind in simulate.TOPIC_KINDS
        assert len(key) == 13 and key.startswith(b"86")
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            assert kind == "calls"
            continue
        if obj.get("msisdn") and isinstance(obj.get("type"), str):
            assert obj["msisdn"].encode() == key


def test_cli_writes_events_and_truth(tmp_path):
    from stream.cli import main

    out, truth = tmp_path / "ev.ndjson", tmp_path / "truth.csv"
    assert (
        main(
            [
                "simulate",
                "--subscribers",
                "100",
                "--days",
                "10",
                "--seed",
                "2",
                "--out",
                str(out),
                "--truth",
                str(truth),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(truth.open()))
    assert len(rows) == 100 and list(rows[0]) == list(simulate.TRUTH_FIELDS)
    assert sum(1 for _ in out.open("rb")) > 100 * 10
    assert simulate.read_truth(truth)[0]["tenure"] > 0


def test_produce_to_kafka_lands_on_the_right_topics(kafka_bootstrap, unique):
    from aiokafka import AIOKafkaConsumer

    from stream.settings import Settings

    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_calls=f"t-calls-{unique}",
        topic_sms=f"t-sms-{unique}",
        topic_recharges=f"t-rch-{unique}",
        topic_profiles=f"t-prof-{unique}",
        topic_alarms=f"t-alarms-{unique}",
        topic_deadletter=f"t-dl-{unique}",
        partitions=3,
    )
    recs, truth = generate(40, 8, 4, fmt="records", malformed_rate=0.01)
    recs = list(recs)
    expected = collections.Counter(k for k, _, _ in recs)

    async def go():
        sent = await simulate.produce_to_kafka(iter(recs), settings, rate=0, progress=False)
        assert sent == len(recs)
        topics = {
            settings.topic_calls: "calls",
            settings.topic_sms: "sms",
            settings.topic_recharges: "recharges",
            settings.topic_profiles: "profiles",
        }
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=f"g-{unique}",
            enable_auto_commit=False,
        )
        await consumer.start()
        got = collections.Counter()
        parts = collections.defaultdict(set)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while sum(got.values()) < len(recs) and loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, msgs in batch.items():
                    for m in msgs:
                        kind = topics[tp.topic]
                        got[kind] += 1
                        assert len(m.key) == 13 and m.key.startswith(b"86")
                        parts[m.key].add((tp.topic, tp.partition))
                        try:
                            obj = orjson.loads(m.value)
                        except orjson.JSONDecodeError:
                            assert kind == "calls"
                            continue
                        try:
                            _check_event(obj)
                        except (AssertionError, KeyError, TypeError):
                            assert kind == "calls"  # malformed lines go to the calls topic
                            continue
                        assert {"call": "calls", "sms": "sms", "recharge": "recharges", "profile": "profiles"}[
                            obj["type"]
                        ] == kind
                        assert obj["msisdn"].encode() == m.key
            for t in topics:
                assert len(consumer.partitions_for_topic(t)) == 3  # created with Settings.partitions
        finally:
            await consumer.stop()
        assert got == expected
        # co-partitioning: a key lands on the same partition number in every topic
        for key, tps in parts.items():
            assert len({p for _, p in tps}) == 1, key
        # rate limiting and early stop
        t0 = loop.time()
        assert await simulate.produce_to_kafka(iter(recs[:600]), settings, rate=1000, progress=False) == 600
        assert loop.time() - t0 >= 0.5
        stop = asyncio.Event()
        stop.set()
        assert await simulate.produce_to_kafka(iter(recs), settings, progress=False, stop_event=stop) == 0

    asyncio.run(go())


def test_cli_kafka_mode_with_a_copy(kafka_bootstrap, unique, tmp_path, monkeypatch):
    from aiokafka import AIOKafkaConsumer

    from stream.cli import main

    # Settings.from_env() rejects unknown CHURNWATCH_* names; the test-port variable is one of them
    monkeypatch.delenv("CHURNWATCH_TEST_KAFKA_PORT", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("CHURNWATCH_PARTITIONS", "2")
    for kind in ("CALLS", "SMS", "RECHARGES", "PROFILES", "ALARMS", "DEADLETTER"):
        monkeypatch.setenv(f"CHURNWATCH_TOPIC_{kind}", f"cli-{kind.lower()}-{unique}")
    copy = tmp_path / "sent.ndjson"
    assert (
        main(
            [
                "simulate",
                "--kafka",
                "--subscribers",
                "20",
                "--days",
                "3",
                "--seed",
                "9",
                "--out",
                str(copy),
                "--truth",
                str(tmp_path / "t.csv"),
            ]
        )
        == 0
    )
    sent = copy.read_bytes().splitlines()
    assert len(sent) > 20

    async def count():
        c = AIOKafkaConsumer(
            f"cli-calls-{unique}",
            f"cli-sms-{unique}",
            f"cli-recharges-{unique}",
            f"cli-profiles-{unique}",
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=f"g-cli-{unique}",
        )
        await c.start()
        n = 0
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while n < len(sent) and loop.time() < deadline:
                for msgs in (await c.getmany(timeout_ms=1000)).values():
                    n += len(msgs)
            assert len(c.partitions_for_topic(f"cli-sms-{unique}")) == 2
        finally:
            await c.stop()
        return n

    assert asyncio.run(count()) == len(sent)
