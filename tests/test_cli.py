"""The console script parses the argv it is given, not the process's ``sys.argv``."""

from __future__ import annotations

import sys

from stream.cli import build_parser, main


def test_parser_follows_the_given_argv_not_sys_argv(monkeypatch, tmp_path):
    # as under `pytest tests/x.py -q`: sys.argv names no churnwatch command
    monkeypatch.setattr(sys, "argv", ["pytest", "tests/engine/test_backtest.py", "-q"])
    args = build_parser(["backtest", "--events", "in.ndjson", "--alarms-out", "out.ndjson"]).parse_args(
        ["backtest", "--events", "in.ndjson", "--alarms-out", "out.ndjson"]
    )
    assert (args.command, args.events, args.alarms_out) == ("backtest", "in.ndjson", "out.ndjson")
    events = tmp_path / "e.ndjson"
    events.write_text(
        '{"type":"sms","msisdn":"8613800000001","ts":1767000000,"direction":"out","peer":"8613900000000"}\n'
    )
    assert main(["backtest", "--events", str(events), "--alarms-out", str(tmp_path / "a.ndjson"), "--quiet"]) == 0
