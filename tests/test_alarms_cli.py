"""``churnwatch alarms``: the pure table formatting, and the command itself against a real broker
(records produced to a unique topic, the command run as a subprocess)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

from stream.contract import alarm_id
from stream.tools.alarms import COLUMNS, _ndjson_line, format_header, format_row, format_table, parse_record

ROOT = Path(__file__).resolve().parent.parent
ALARM_SCHEMA = json.loads((ROOT / "schemas" / "alarm.schema.json").read_text(encoding="utf-8"))
UTC8 = timezone(timedelta(hours=8))


def make_alarm(i: int, phase: str = "alarm", **extra) -> dict:
    msisdn = f"86138000{i:05d}"
    rec = {
        "alarm_id": alarm_id(msisdn, phase, 20415),
        "msisdn": msisdn,
        "phase": phase,
        "score": 0.5 + i / 100,
        "signals": [
            {"name": "competitor_hotline", "value": 2, "threshold": 1, "detail": {"operator": "cu"}},
            {"name": "traffic_drop", "value": 0.72, "threshold": 0.5},
        ],
        "reason": "competitor_switch",
        "value_tier": "high",
        "event_time": 1763900000 + i,
        "emitted_at": 1763900003.5 + i,
        "schema_version": 1,
    }
    rec.update(extra)
    return rec


# ---------------------------------------------------------------------------------------------
# Pure formatting


def test_format_row_masks_and_shows_the_essentials():
    row = format_row(make_alarm(1), tz=UTC8)
    assert "8613800000001" not in row  # personal data masked
    assert "*********0001" in row
    assert row.startswith("2025-11-23T20:13:21+08:00")  # event_time 1763900001 in UTC+8
    for text in ("alarm", "high", "0.51", "competitor_switch", "competitor_hotline,traffic_drop"):
        assert text in row


def test_format_row_names_the_masked_second_sim():
    sig = [{"name": "dual_sim", "value": 1, "threshold": 1, "detail": {"shadow_peer": "*******0099", "jaccard": 0.6}}]
    row = format_row(make_alarm(1, signals=sig), tz=UTC8)
    assert row.endswith("dual_sim(*******0099)")


def test_format_row_tolerates_missing_and_malformed_fields():
    # a trusted topic can still carry an old or odd record: show '?' and never raise
    row = format_row({"msisdn": "8613800001234", "score": "high", "signals": "x", "event_time": True}, tz=UTC)
    cells = row.split()
    assert cells == ["?", "*********1234", "?", "?", "?", "?", "?"]
    assert format_row({}, tz=UTC).split() == ["?"] * 7
    assert format_row({"event_time": 1e20, "signals": []}, tz=UTC).split()[0] == "?"  # out of range
    assert format_row({"signals": []}).split()[-1] == "-"  # no signals (e.g. recovered)
    assert format_row({"signals": [{"value": 1}, 7]}).split()[-1] == "?,?"


def test_columns_are_aligned_across_rows():
    records = [
        make_alarm(1),
        make_alarm(2, phase="recovered", signals=[], reason="unknown", value_tier="low", score=0.1),
        dict(make_alarm(3, phase="churned"), msisdn="12345"),  # short msisdn
    ]
    lines = format_table(records, tz=UTC).splitlines()
    assert lines[0] == format_header() and lines[0].split() == [title for title, _ in COLUMNS]
    starts = []
    pos = 0
    for _, width in COLUMNS[:-1]:
        pos += width + 2
        starts.append(pos)
    for line in lines[1:]:
        for s in starts:
            assert line[s - 2 : s] == "  " and line[s] != " ", (line, s)
    assert format_table(records, header=False).count("\n") == 3


def test_parse_record():
    assert parse_record(b'{"a": 1}') == {"a": 1}
    for bad in (b"not json", b"[1, 2]", b'"alarm"', b"\xff", None):
        with pytest.raises(ValueError):
            parse_record(bad)


def test_ndjson_line_is_the_record_unchanged():
    raw = b'{"alarm_id":"x",  "msisdn":"8613800001234", "z_extra": [1, 2]}'
    assert _ndjson_line(raw, parse_record(raw)) == raw + b"\n"
    pretty = json.dumps(make_alarm(1), indent=2).encode()  # spread over lines: compacted, same content
    line = _ndjson_line(pretty, parse_record(pretty))
    assert line.count(b"\n") == 1 and orjson.loads(line) == make_alarm(1)


# ---------------------------------------------------------------------------------------------
# The command against a real broker


def cli_env(bootstrap: str) -> dict:
    # The child reads Settings.from_env(), which rejects unknown CHURNWATCH_* variables (such as
    # the test-only CHURNWATCH_TEST_KAFKA_PORT): give it a clean environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_") and not k.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_cli(bootstrap: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", "alarms", *args],
        env=cli_env(bootstrap),
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
    )


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce(
    bootstrap: str, topic: str, values: list[bytes], partition: int | None = None, keys: list[bytes] | None = None
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i, value in enumerate(values):
            key = keys[i] if keys else None
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


@pytest.mark.kafka
async def test_ndjson_max_passes_records_through_and_skips_garbage(kafka_bootstrap, unique):
    topic = f"test.alarms.{unique}"
    await create_topic(kafka_bootstrap, topic, 1)
    records = [make_alarm(i, previous_phase="warning") for i in range(4)]
    values = [orjson.dumps(r) for r in records]
    # garbage in second place: reported and skipped, not counted towards --max
    await produce(
        kafka_bootstrap, topic, [values[0], b"{not json", values[1], b"[1,2]", values[2], values[3]], partition=0
    )

    proc = run_cli(kafka_bootstrap, "--topic", topic, "--max", "3", "--format", "ndjson")
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.splitlines()
    assert lines == values[:3]  # byte for byte, in order, extra fields kept
    validator = Draft202012Validator(ALARM_SCHEMA)
    for line in lines:
        validator.validate(orjson.loads(line))
    err = proc.stderr.decode()
    assert err.count("skipping unparseable record") == 2
    assert f"{topic}[0]@1" in err and f"{topic}[0]@3" in err


@pytest.mark.kafka
async def test_reads_all_partitions_and_exits_when_caught_up(kafka_bootstrap, unique):
    topic = f"test.alarms.{unique}"
    await create_topic(kafka_bootstrap, topic, 3)
    records = [make_alarm(i) for i in range(7)]
    await produce(
        kafka_bootstrap, topic, [orjson.dumps(r) for r in records], keys=[r["msisdn"].encode() for r in records]
    )

    # piped stdout + --format auto = NDJSON; no --max: stops at the end offsets seen at start
    proc = run_cli(kafka_bootstrap, "--topic", topic)
    assert proc.returncode == 0, proc.stderr.decode()
    got = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(got, key=lambda r: r["msisdn"]) == records

    # an empty topic: nothing to read, exits at once
    empty = f"test.alarms.empty.{unique}"
    await create_topic(kafka_bootstrap, empty, 2)
    proc = run_cli(kafka_bootstrap, "--topic", empty)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()  # NDJSON stays machine-readable
    assert f"no alarms yet (topic {empty}, 2 partitions, end offsets total 0)" in proc.stderr.decode()
    # as a table (what a terminal gets): the header, then the same line
    proc = run_cli(kafka_bootstrap, "--topic", empty, "--format", "table")
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 0 and len(lines) == 2, proc.stdout
    assert lines[1] == f"no alarms yet (topic {empty}, 2 partitions, end offsets total 0)"


@pytest.mark.kafka
async def test_table_output(kafka_bootstrap, unique):
    topic = f"test.alarms.{unique}"
    await create_topic(kafka_bootstrap, topic, 1)
    records = [
        make_alarm(1),
        make_alarm(
            2,
            phase="warning",
            signals=[{"name": "silence", "value": 9, "threshold": 7}],
            reason="low_usage",
            value_tier="mid",
            score=0.4,
        ),
        make_alarm(3, phase="recovered", signals=[], reason="unknown", value_tier="low", score=0.05),
    ]
    await produce(kafka_bootstrap, topic, [orjson.dumps(r) for r in records], partition=0)

    proc = run_cli(kafka_bootstrap, "--topic", topic, "--format", "table")
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "MSISDN", "PHASE", "TIER", "SCORE", "REASON", "SIGNALS"]
    assert len(lines) == 4
    for rec in records:
        assert rec["msisdn"] not in out  # masked
    assert lines[1].split()[1:] == [
        "*********0001",
        "alarm",
        "high",
        "0.51",
        "competitor_switch",
        "competitor_hotline,traffic_drop",
    ]
    assert lines[2].split()[1:] == ["*********0002", "warning", "mid", "0.40", "low_usage", "silence"]
    assert lines[3].split()[1:] == ["*********0003", "recovered", "low", "0.05", "unknown", "-"]
    # the time column is the local ISO time with its offset, the same as the pure formatter's
    assert lines == format_table(records).splitlines()


def read_line(proc: subprocess.Popen, timeout: float = 30) -> bytes:
    """One line of the child's stdout, or fail after ``timeout`` s (never hang the test run)."""
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no complete line within {timeout}s (got {buf!r})"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            assert chunk, f"child closed stdout (rc={proc.poll()}, got {buf!r})"
            buf += chunk
    return buf


@pytest.mark.kafka
async def test_follow_tails_new_records_and_ctrl_c_exits_0(kafka_bootstrap, unique):
    topic = f"test.alarms.{unique}"
    await create_topic(kafka_bootstrap, topic, 2)
    first, second = make_alarm(1), make_alarm(2)
    await produce(kafka_bootstrap, topic, [orjson.dumps(first)], partition=0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "alarms", "--topic", topic, "--follow", "--format", "ndjson"],
        env=cli_env(kafka_bootstrap),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert orjson.loads(read_line(proc)) == first  # caught up with the backlog...
        time.sleep(0.5)
        assert proc.poll() is None  # ...and still running
        await produce(kafka_bootstrap, topic, [orjson.dumps(second)], partition=1)
        assert orjson.loads(read_line(proc)) == second  # a new record shows up
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.kafka
def test_missing_topic_is_an_error_unless_following(kafka_bootstrap, unique):
    topic = f"test.alarms.absent.{unique}"
    proc = run_cli(kafka_bootstrap, "--topic", topic)
    assert proc.returncode == 1
    assert b"does not exist" in proc.stderr

    # --follow waits for the topic to appear (without creating it); Ctrl-C still exits 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "alarms", "--topic", topic, "--follow"],
        env=cli_env(kafka_bootstrap),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(3)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out) == (0, b""), err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert run_cli(kafka_bootstrap, "--topic", topic).returncode == 1  # still not created


def test_unreachable_broker_is_a_clean_error():
    proc = run_cli("127.0.0.1:1", "--topic", "whatever", timeout=120)
    assert proc.returncode == 1
    assert b"cannot reach Kafka at 127.0.0.1:1" in proc.stderr
    assert b"Traceback" not in proc.stderr and b"Unclosed" not in proc.stderr


def test_bad_settings_exit_2(tmp_path):
    env = dict(cli_env("127.0.0.1:1"), CHURNWATCH_NO_SUCH_SETTING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "alarms"], env=env, cwd=ROOT, capture_output=True, timeout=60
    )
    assert proc.returncode == 2
    assert b"CHURNWATCH_NO_SUCH_SETTING" in proc.stderr


@pytest.mark.kafka
async def test_dedupe_shows_each_alarm_id_once_and_counts_the_resent(kafka_bootstrap, unique):
    """A worker that crashed sends the alarms of its replay again, with the same alarm_id."""
    topic = f"test.alarms.{unique}"
    await create_topic(kafka_bootstrap, topic, 1)
    records = [make_alarm(i) for i in range(3)]
    resent = [dict(records[0], emitted_at=records[0]["emitted_at"] + 60), dict(records[2], emitted_at=1.0)]
    values = [orjson.dumps(r) for r in [records[0], records[1], resent[0], records[2], resent[1]]]
    await produce(kafka_bootstrap, topic, values, partition=0)

    proc = run_cli(kafka_bootstrap, "--topic", topic, "--format", "ndjson")
    assert proc.returncode == 0 and proc.stdout.splitlines() == values  # without it: all, as on the topic
    proc = run_cli(kafka_bootstrap, "--topic", topic, "--format", "ndjson", "--dedupe")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.splitlines() == [values[0], values[1], values[3]]  # the first of each id
    assert "2 re-sent record(s) skipped" in proc.stderr.decode()
    proc = run_cli(kafka_bootstrap, "--topic", topic, "--format", "ndjson", "--dedupe", "--max", "3")
    assert proc.stdout.splitlines() == [values[0], values[1], values[3]]  # --max counts records shown
