"""The backtest command over a generated file: arguments, output contract, counted bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson

from stream.cli import main
from stream.contract import ALARM_FIELDS

from .gen import random_stream


def write(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_backtest_command(tmp_path, capsys):
    ev = tmp_path / "events.ndjson"
    lines = random_stream(3, n_subs=20, n_days=50, per_day=4, bad_rate=0.02)
    write(ev, lines + [b"", b"   ", b"not json at all"])
    out = tmp_path / "alarms.ndjson"
    assert main(["backtest", "--events", str(ev), "--alarms-out", str(out), "--batch-size", "200"]) == 0
    text = capsys.readouterr().out
    assert "events:" in text and "alarms:" in text and "rejected" in text
    alarms = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert alarms, "a 50-day random stream with shared handsets produces alarms"
    schema = json.loads((Path(__file__).parents[2] / "schemas" / "alarm.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for a in alarms:
        assert set(ALARM_FIELDS) <= set(a)
        validator.validate(a)
    # deterministic: a second run gives the same bytes; the reference engine agrees
    out2 = tmp_path / "alarms2.ndjson"
    assert main(["backtest", "--events", str(ev), "--alarms-out", str(out2), "--batch-size", "200", "--quiet"]) == 0
    assert out2.read_bytes() == out.read_bytes()
    out3 = tmp_path / "alarms3.ndjson"
    assert (
        main(
            [
                "backtest",
                "--events",
                str(ev),
                "--alarms-out",
                str(out3),
                "--batch-size",
                "200",
                "--quiet",
                "--reference",
            ]
        )
        == 0
    )
    assert out3.read_bytes() == out.read_bytes()


def test_backtest_counts_bad_lines(tmp_path):
    from stream.tools.backtest import backtest

    ev = tmp_path / "e.ndjson"
    good = b'{"type":"call","msisdn":"8613800000001","ts":1760000000,"direction":"out","peer":"10010","duration_s":5}'
    write(ev, [good, b"{oops", b'{"type":"call"}', b"[]", good.replace(b"1760000000", b"true")])
    s = backtest(str(ev), str(tmp_path / "a.ndjson"))
    assert s["lines"] == 5 and s["applied"] == 1
    assert s["rejected"] == {"invalid_field": 1, "invalid_json": 1, "missing_field": 1, "not_object": 1}
    # the one valid event is a dial to a competitor's care line: alarm-level, no baseline needed
    assert s["alarms"] == 1 and s["alarms_by_reason"] == {"competitor_switch": 1}
