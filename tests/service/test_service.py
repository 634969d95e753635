"""The service end to end on the real broker: one worker over a small simulated population.

One module-scoped scenario: produce the population (with a few malformed messages and a few
hand-made bad ones), run one worker until its committed offsets reach the end of the inputs,
then check the alarms, the dead letters, the durable state, /metrics and /subscribers.
"""

from __future__ import annotations

import asyncio
import base64
import time

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.contract import ALARM_FIELDS
from stream.engine import Engine
from stream.settings import Settings
from stream.tools.simulate import generate

from .harness import (
    WorkerProc,
    assert_backtest_alarms,
    backtest_alarms,
    engine_config,
    exact_env,
    produce_live,
    prometheus_tool,
    read_alarms,
    read_event_times,
    read_table,
    read_topic,
    replay_in_process,
    scenario_env,
    wait_caught_up,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_SUBS, DAYS, SEED = 300, 75, 11

BAD = [
    # (key, value, expected reason)
    (b"8613800000001", b"{not json", "invalid_json"),
    (b"8613800000002", b"[1,2,3]", "not_object"),
    (b"8613800000003", b'{"type":"fax","msisdn":"8613800000003","ts":1767000000}', "unknown_type"),
    (
        b"8613800000004",
        b'{"type":"call","msisdn":"8613800000004","ts":1767000000,"direction":"out","peer":"8613900000000"}',
        "missing_field",
    ),
    (
        b"8613800000005",
        b'{"type":"call","msisdn":"8613800000005","ts":1767000000,"direction":"up","peer":"8613900000000","duration_s":5}',
        "invalid_field",
    ),
    (
        b"8613899999999",
        b'{"type":"sms","msisdn":"8613800000006","ts":1767000000,"direction":"out","peer":"8613900000000"}',
        "key_mismatch",
    ),
    # a well-formed call in the year 2100: rejected, and it must not move event time (issue 16.2)
    (
        b"8613800000007",
        b'{"type":"call","msisdn":"8613800000007","ts":4102444800,"direction":"out","peer":"8613900000000","duration_s":5}',
        "future",
    ),
]


BIG_KEY = b"8613800000009"
BIG = b'{"type":"call","msisdn":"8613800000009","note":"' + b"x" * (4_194_304 - 1024) + b'"'  # invalid JSON, ~4 MiB


async def _produce_big(settings: Settings) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic_calls, BIG, key=BIG_KEY)
    finally:
        await producer.stop()


def population():
    events, truth = generate(N_SUBS, DAYS, SEED, fmt="records", malformed_rate=0.0)
    return list(events), truth


@pytest.fixture(scope="module")
def scenario(kafka_bootstrap, tmp_path_factory):
    import uuid

    unique = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("svc")
    env = scenario_env(kafka_bootstrap, unique, tmp, partitions=4, **exact_env(tmp))
    settings = Settings.from_env(env)
    records, truth = population()
    bad = [("calls", k, v) for k, v, _ in BAD]
    worker = WorkerProc(env, "w1", tmp).start()
    try:
        t0 = time.monotonic()
        produce_live(settings, records[: len(records) // 2] + bad + records[len(records) // 2 :], workers=[worker])
        elapsed = time.monotonic() - t0
        asyncio.run(_produce_big(settings))  # an invalid message of the broker's maximum size
        wait_caught_up(settings, timeout_s=120, workers=[worker])
        yield {"settings": settings, "worker": worker, "records": records, "truth": truth, "elapsed": elapsed}
    finally:
        worker.stop()


def test_alarm_topic_receives_expected_alarms(scenario):
    alarms = read_alarms(scenario["settings"])
    assert alarms, "no alarms at all"
    for a in alarms:
        assert set(a) >= set(ALARM_FIELDS)  # the contract's fields (pinned to schemas/alarm.schema.json)
    truth = {t["msisdn"]: t for t in scenario["truth"]}
    by_sub: dict[str, set[str]] = {}
    for a in alarms:
        by_sub.setdefault(a["msisdn"], set()).update(
            s["name"] for s in a["signals"] if a["phase"] in ("warning", "alarm", "churned")
        )
    switchers = [
        m for m, t in truth.items() if t["archetype"] == "switcher" and t.get("notes", "").find("hotline=") >= 0
    ]
    assert switchers
    # switchers who dialled a rival's care line are alarmed, with that signal
    hit = [m for m in switchers if "competitor_hotline" in by_sub.get(m, set())]
    assert len(hit) >= 0.8 * len(switchers), (len(hit), len(switchers))
    # silent porters are caught by the sweep's silence signal
    porters = [
        m
        for m, t in truth.items()
        if t["archetype"] == "silent_porter" and t["churn_day"] not in ("", None) and int(t["churn_day"]) < DAYS - 10
    ]
    caught = [m for m in porters if "silence" in by_sub.get(m, set())]
    assert porters and len(caught) >= 0.8 * len(porters), (len(caught), len(porters))
    # keyed by msisdn
    msgs = read_topic(scenario["settings"].bootstrap_servers, scenario["settings"].topic_alarms)
    assert all(m.key.decode() == orjson.loads(m.value)["msisdn"] for m in msgs)


def test_bad_messages_land_in_deadletter_with_reasons(scenario):
    s = scenario["settings"]
    letters = [orjson.loads(m.value) for m in read_topic(s.bootstrap_servers, s.topic_deadletter)]
    by_original = {base64.b64decode(d["original_b64"]): d for d in letters}
    for _key, value, reason in BAD:
        d = by_original.get(value)
        assert d is not None, f"{value!r} not dead-lettered"
        assert d["reason"] == reason, (value, d)
        assert d["topic"] == s.topic_calls and isinstance(d["offset"], int) and isinstance(d["partition"], int)
        assert d["schema_version"] == 1


def test_a_message_of_the_brokers_maximum_size_is_dead_lettered_truncated(scenario):
    """Its dead letter must fit the producer's request limit (the original base64-encoded would
    not): the first 64 KiB of the original, flagged, with the whole one's size and sha256."""
    import hashlib

    s = scenario["settings"]
    letters = [orjson.loads(m.value) for m in read_topic(s.bootstrap_servers, s.topic_deadletter) if m.key == BIG_KEY]
    assert len(letters) == 1, f"{len(letters)} dead letters for the big message"
    d = letters[0]
    assert d["reason"] == "invalid_json" and d["original_truncated"] is True
    assert d["original_size"] == len(BIG) and d["original_sha256"] == hashlib.sha256(BIG).hexdigest()
    assert base64.b64decode(d["original_b64"]) == BIG[: 64 * 1024]
    assert scenario["worker"].proc.poll() is None, "the worker died"


def test_a_far_future_event_does_not_move_event_time(scenario):
    """The year-2100 call of BAD is dead-lettered as ``future``; the event time the worker judges
    at, and the one it persisted per partition, stay within the population's days."""
    last_ts = max(orjson.loads(v)["ts"] for _, _, v in scenario["records"])
    status, body = scenario["worker"].get("/healthz")
    assert status == 200, body
    assert orjson.loads(body)["event_time"] <= last_ts
    marks = read_event_times(scenario["settings"])
    assert marks and max(marks.values()) <= last_ts, (marks, last_ts)


def test_state_is_every_valid_event_exactly_once(scenario):
    table = read_table(scenario["settings"])
    expected = replay_in_process(scenario["records"], config=engine_config(scenario["settings"]))
    assert len(table) == len(expected)
    restored = Engine(engine_config(scenario["settings"]))
    for msisdn, value in table.items():
        restored.restore(msisdn, value[2:])  # 2-byte partition header
    for msisdn in table:
        got, want = restored.state_of(msisdn), expected.state_of(msisdn)
        assert got["ring"] == want["ring"], msisdn
        assert got["rch"] == want["rch"], msisdn


def test_metrics_scrape_and_parse(scenario):
    status, body = scenario["worker"].get("/metrics")
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    events = {
        s.labels["type"]: s.value for s in fams["churnwatch_events"].samples if s.name == "churnwatch_events_total"
    }
    n_valid = len(scenario["records"])
    assert sum(events.values()) == n_valid
    rejects = {
        s.labels["reason"]: s.value for s in fams["churnwatch_rejects"].samples if s.name == "churnwatch_rejects_total"
    }
    assert sum(rejects.values()) == len(BAD) + 1  # and the big one
    assert rejects.get("late", 0) == 0
    assert fams["churnwatch_subscribers"].samples[0].value > 0
    assert any(
        s.name == "churnwatch_batch_seconds_count" and s.value > 0 for s in fams["churnwatch_batch_seconds"].samples
    )
    assert any(
        s.name == "churnwatch_sweep_seconds_count" and s.value > 0 for s in fams["churnwatch_sweep_seconds"].samples
    )
    alarms = sum(s.value for s in fams["churnwatch_alarms"].samples if s.name == "churnwatch_alarms_total")
    assert alarms == len(read_alarms(scenario["settings"]))
    # personal data never becomes a label
    text = body.decode()
    assert not any(t["msisdn"] in text for t in scenario["truth"][:50])


def test_promtool_accepts_metrics(scenario):
    import subprocess

    promtool = prometheus_tool("promtool")
    _, body = scenario["worker"].get("/metrics")
    out = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_real_prometheus_scrapes_the_worker(scenario, tmp_path):
    """Prometheus itself scrapes /metrics (1 s interval), then answers PromQL over it: the
    worker's events total, and a rate over it. It also evaluates the shipped alerting rules
    (deploy/prometheus/alerts.yml) over the worker's metrics: every rule evaluates without an
    error, and none fires for this healthy worker."""
    import json
    import subprocess
    import urllib.parse
    import urllib.request
    from pathlib import Path

    from .harness import free_port

    prometheus = prometheus_tool("prometheus")
    w = scenario["worker"]
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    rules = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
    cfg.write_text(
        f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{rules}']\n"
        f"scrape_configs:\n  - job_name: churnwatch\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{w.port}']\n"
    )
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )

    def query(q: str) -> list:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=5) as r:
            data = json.loads(r.read())
        assert data["status"] == "success", data
        return data["data"]["result"]

    try:
        want = float(sum(1 for _ in scenario["records"]))
        got, rate = None, None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                got = query('sum(churnwatch_events_total{job="churnwatch"})')
                rate = query('sum(rate(churnwatch_events_total{job="churnwatch"}[1m]))')
            except OSError:
                got = None
            if got and rate:  # a rate needs two scrapes
                break
            time.sleep(1)
        assert got and float(got[0]["value"][1]) == want, got
        assert rate and float(rate[0]["value"][1]) >= 0.0, rate
        up = query('up{job="churnwatch"}')
        assert up and up[0]["value"][1] == "1", up
        evaluated: list = []
        while time.monotonic() < deadline:  # every rule evaluated at least once over the scrapes
            url = f"http://127.0.0.1:{port}/api/v1/rules"
            with urllib.request.urlopen(url, timeout=5) as r:
                evaluated = [rule for g in json.loads(r.read())["data"]["groups"] for rule in g["rules"]]
            if evaluated and all(rule["health"] != "unknown" for rule in evaluated):
                break
            time.sleep(1)
        assert len(evaluated) == 9, evaluated
        assert all(rule["health"] == "ok" for rule in evaluated), [
            (rule["name"], rule.get("lastError")) for rule in evaluated if rule["health"] != "ok"
        ]
        assert not [rule["name"] for rule in evaluated if rule["state"] == "firing"], evaluated
    finally:
        proc.terminate()
        proc.wait(30)


def test_subscriber_query(scenario):
    w = scenario["worker"]
    msisdn = scenario["truth"][0]["msisdn"]
    status, body = w.get(f"/subscribers/{msisdn}")
    assert status == 200, body
    view = orjson.loads(body)
    assert view["phase"] in ("healthy", "warning", "alarm", "churned")
    assert 0.0 <= view["score"] <= 1.0
    assert isinstance(view["signals"], list) and view["days"]
    status, _ = w.get("/subscribers/8619999999999")
    assert status == 404
    status, _ = w.get("/subscribers/not-a-number")
    assert status == 400
    status, _ = w.get(f"/subscribers/{msisdn}%0A")  # a trailing newline is not an msisdn
    assert status == 400


def test_no_raw_state_or_cluster_views(scenario):
    """Faust's built-in views would serve a subscriber's raw snapshot (full contact numbers, IMEI)
    and the cluster's hosts and assignments to anyone who can reach the port."""
    w = scenario["worker"]
    msisdn = scenario["truth"][0]["msisdn"]
    for path in (f"/table/subscriber-state/{msisdn}/", "/table/subscriber-state/", "/router/", "/graph/", "/stats/"):
        status, body = w.get(path)
        assert status == 404, (path, status, body[:200])
    # our own view: the subscriber's number, and no other full number (contacts, a second SIM and
    # handsets appear masked or not at all), for every subscriber with an alarm
    import re

    for a in read_alarms(scenario["settings"])[:40]:
        status, body = w.get(f"/subscribers/{a['msisdn']}")
        assert status == 200, body
        others = set(re.findall(rb"(?<![0-9])86[0-9]{11}(?![0-9])", body)) - {
            a["msisdn"].encode()
        }  # numbers in the simulated plan
        assert not others, (a["msisdn"][-4:], sorted(others)[:3])


def test_logs_mask_msisdns(scenario):
    log = scenario["worker"].log()
    assert not any(t["msisdn"] in log for t in scenario["truth"])


def test_service_alarms_match_the_backtest(scenario, tmp_path):
    """Same events, same alarms: the worker (Kafka fetches, 4 partitions, its own complete time)
    and the backtest (the file, 5000-line batches) run the one batch step, and days are decided
    in event time, so the records are the same (subscriber, phase, day via alarm_id, signals),
    but for the contact-circle sketch's order sensitivity (harness.CIRCLE_ORDER_SLACK; 0 in most
    runs). Second-SIM evidence goes through the join's two Kafka hops in the service; a worker
    decides a day only once the join answered the day before, as the backtest confirms a day's
    evidence before the next (the barrier, stream/service/shadow.py), but confirms the evidence
    against the subscriber's state when it arrives, with later events applied: its pairs are
    bounded (README "When alarms are decided")."""
    offline = backtest_alarms(scenario["records"], scenario["settings"].config_path, tmp_path)
    report = assert_backtest_alarms(read_alarms(scenario["settings"]), offline)
    assert report["resent"] == 0  # no duplicate deliveries in a clean run
