"""Settings: documented defaults, env parsing, and clear failures on misconfiguration."""

from __future__ import annotations

import pytest

from stream.contract import DEFAULT_TOPICS
from stream.settings import ENV_VARS, Settings, SettingsError


def test_defaults_match_the_contract():
    s = Settings.from_env({})
    assert s.input_topics == ("cdr.calls", "cdr.sms", "cdr.recharges", "subscriber.profiles")
    assert (s.topic_alarms, s.topic_deadletter) == (DEFAULT_TOPICS["alarms"], DEFAULT_TOPICS["deadletter"])
    assert s.store == "rocksdb://"
    assert s.web_host == "127.0.0.1"


def test_env_values_are_typed():
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "h1:9092,h2:9093",
            "CHURNWATCH_PARTITIONS": "6",
            "CHURNWATCH_BATCH_TIMEOUT_S": "0.25",
            "CHURNWATCH_STORE": "memory://",
        }
    )
    assert (s.partitions, s.batch_timeout_s, s.store) == (6, 0.25, "memory://")


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"CHURNWATCH_PARTITONS": "6"}, "unknown setting(s): CHURNWATCH_PARTITONS"),  # typo is caught
        ({"CHURNWATCH_PARTITIONS": "six"}, "CHURNWATCH_PARTITIONS='six': expected int"),
        ({"CHURNWATCH_PARTITIONS": "0"}, "must be 1..10000"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "is not host:port"),
        ({"CHURNWATCH_STORE": "redis://"}, "expected rocksdb:// or memory://"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required"),
        ({"CHURNWATCH_CONFIG": "/nonexistent/thresholds.toml"}, "no such file"),
        ({"CHURNWATCH_TOPIC_ALARMS": "cdr.calls"}, "topic names must be distinct"),
        ({"CHURNWATCH_COMMIT_INTERVAL_S": "0"}, "CHURNWATCH_COMMIT_INTERVAL_S must be in (0, 3600]"),
        ({"CHURNWATCH_COMMIT_EVERY": "0"}, "CHURNWATCH_COMMIT_EVERY must be >= 1"),
        ({"CHURNWATCH_BROKER_DOWN_S": "0"}, "CHURNWATCH_BROKER_DOWN_S must be in [1, 3600]"),
        ({"CHURNWATCH_SHUTDOWN_GRACE_S": "-1"}, "CHURNWATCH_SHUTDOWN_GRACE_S must be in [1, 3600]"),
        ({"CHURNWATCH_GC_GEN0": "10"}, "CHURNWATCH_GC_GEN0 must be in [100, 10000000]"),
    ],
)
def test_misconfiguration_fails_with_a_clear_message(env, needle):
    with pytest.raises(SettingsError) as exc:
        Settings.from_env(env)
    assert needle in str(exc.value)


def test_commit_cadence_reaches_the_faust_app():
    from stream.service.churn import ChurnService

    s = Settings.from_env(
        {"CHURNWATCH_COMMIT_INTERVAL_S": "2.5", "CHURNWATCH_COMMIT_EVERY": "777", "CHURNWATCH_STORE": "memory://"}
    )
    conf = ChurnService(s).app.conf
    assert (conf.broker_commit_interval, conf.broker_commit_every) == (2.5, 777)


def test_every_env_var_maps_to_a_field():
    names = {f for f in Settings.__dataclass_fields__}
    assert set(ENV_VARS.values()) <= names


def test_sasl_settings_reach_the_client_kwargs():
    s = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_PASSWORD": "s3cr3t-pw",
        }
    )
    kw = s.kafka_client_kwargs()
    assert (
        kw["sasl_mechanism"] == "SCRAM-SHA-256"
        and kw["sasl_plain_username"] == "u"
        and kw["security_protocol"] == "SASL_PLAINTEXT"
    )
    assert "s3cr3t-pw" not in repr(s)  # the password never shows in logs


def test_the_gc_pauses_are_counted_by_generation():
    import gc

    from stream.service.metrics import Metrics

    m = Metrics()
    cb = m.time_gc()
    try:
        gc.collect(0)
        gc.collect()
    finally:
        gc.callbacks.remove(cb)
    text = m.exposition().decode()
    got = {
        line.split('generation="')[1][0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("churnwatch_gc_seconds_total{")
    }
    assert set(got) == {"0", "1", "2"} and got["0"] > 0 and got["2"] > 0 and got["1"] == 0
