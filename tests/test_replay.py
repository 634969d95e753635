"""``churnwatch replay``: an NDJSON file produced to the input topics through the real broker, each
line unchanged on the topic of its type and keyed by its msisdn, in the file's order; a line that
is not an event goes to the calls topic (the worker dead-letters it)."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import orjson

from stream.tools.replay import lines

from .service.harness import read_topic

ROOT = Path(__file__).resolve().parent.parent


def test_lines_drops_line_ends_and_blank_lines(tmp_path):
    f = tmp_path / "e.ndjson"
    f.write_bytes(b'{"a":1}\r\n\n  \n{"b":2}\n{"c":3}')
    with f.open("rb") as fh:
        assert list(lines(fh)) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_replay_sends_each_line_to_its_topic_keyed_by_msisdn(kafka_bootstrap, unique, tmp_path):
    from stream.tools.simulate import generate

    kind_of = {"call": "calls", "sms": "sms", "recharge": "recharges", "profile": "profiles"}

    def topic_of(e: bytes) -> str | None:
        """The topic kind of an event line, None for a line that is not one."""
        try:
            obj = orjson.loads(e)
            str(obj["msisdn"])
            return kind_of[obj["type"]]
        except Exception:  # noqa: BLE001 - not an event
            return None

    events = [e for e in generate(30, 5, 7, fmt="bytes", malformed_rate=0.02)[0]]
    bad = {e for e in events if topic_of(e) is None}
    assert bad  # the file has malformed lines
    f = tmp_path / "events.ndjson"
    f.write_bytes(b"\n".join(events) + b"\n\n")
    topics = {k: f"r-{k}-{unique}" for k in ("calls", "sms", "recharges", "profiles")}
    env = {
        "PATH": "/usr/bin:/bin",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CHURNWATCH_PARTITIONS": "3",
        "CHURNWATCH_TOPIC_CALLS": topics["calls"],
        "CHURNWATCH_TOPIC_SMS": topics["sms"],
        "CHURNWATCH_TOPIC_RECHARGES": topics["recharges"],
        "CHURNWATCH_TOPIC_PROFILES": topics["profiles"],
    }
    out = subprocess.run(
        [sys.executable, "-m", "stream.cli", "replay", "--events", str(f)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"replay: {len(events):,} events sent" in out.stdout
    got = {k: read_topic(kafka_bootstrap, t) for k, t in topics.items()}
    assert sum(map(len, got.values())) == len(events)
    want = collections.Counter((topic_of(e) or "calls", e) for e in events)  # not an event: the calls topic
    assert collections.Counter((k, m.value) for k, ms in got.items() for m in ms) == want
    for k, ms in got.items():
        for m in ms:
            if m.value not in bad:
                assert m.key == str(orjson.loads(m.value)["msisdn"]).encode(), (k, m)
    # per msisdn, the file's order (one partition per key)
    by_key = collections.defaultdict(list)
    for m in sorted(got["calls"], key=lambda m: (m.partition, m.offset)):
        by_key[m.key].append(m.value)
    file_calls = [e for e in events if topic_of(e) in ("calls", None)]
    for key, vals in by_key.items():
        assert vals == [e for e in file_calls if e in set(vals)], key


def test_replay_names_a_bad_setting():
    out = subprocess.run(
        [sys.executable, "-m", "stream.cli", "replay", "--events", "-"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "", "CHURNWATCH_BOGUS": "1"},
        capture_output=True,
        text=True,
        input="",
        timeout=60,
    )
    assert out.returncode == 2 and out.stderr.startswith("replay: "), out.stderr
