"""Smoke test of the benchmarks: ``python -m bench.run --quick`` runs every benchmark on tiny
inputs against the test broker and writes its results JSON. It checks that they run, never how
fast (no speed is asserted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


def test_quick_bench_runs_and_writes_results(kafka_bootstrap, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap  # reuse the test broker: the bench starts none
    # its own process group: on a timeout the bench's worker children go too (a killed bench.run
    # alone left its worker spinning against the stopped test broker); ~90 s when the machine is
    # quiet, over 300 s seen under load
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path), "--no-readme"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail("bench.run --quick did not finish in 900 s:\n" + out[-4000:] + err[-4000:])
    assert proc.returncode == 0, out[-4000:] + err[-4000:]
    res = json.loads((tmp_path / "quick.json").read_text())
    assert res["mode"] == "quick" and res["ok"] is True
    assert {"machine", "date_utc", "hotpath", "sweep", "e2e", "shadow", "targets"} <= res.keys()
    sh = res["shadow"]
    assert sh["on"]["events"] == sh["off"]["events"] > 0 and "added_us_per_event_total" in sh
    hot = res["hotpath"][0]
    assert {
        "engine_events_per_s_cpu",
        "ceiling_events_per_s_cpu",
        "reference_events_per_s_cpu",
        "ratio_to_ceiling",
        "ratio_to_reference",
        "state_bytes_per_subscriber",
    } <= hot.keys()
    assert res["sweep"]["measured"] and "sweep_s_per_million" in res["sweep"]["measured"][0]
    e2e = res["e2e"]
    assert {"throughput", "latency", "catchup"} <= e2e.keys()
    tp = e2e["throughput"]
    names = ("churnwatch", "bare", "faust") + (
        () if e2e.get("quix_skipped") else ("quix",)
    )  # quix: only if installable
    for name in names:
        assert tp[name]["error"] is None, tp[name]["error"]
        assert tp[name]["events_per_s"] > 0
    assert tp["churnwatch"]["correct"] is True
    assert {"vs_" + n for n in names if n != "churnwatch"} <= tp["ratios"].keys()
    assert e2e["latency"]["alarms_seen"] > 0 and e2e["latency"]["p99_s"] is not None
    assert e2e["catchup"]["correct"] is True
    assert {t["target"] for t in res["targets"]}


def test_shadow_quality_measure_runs(tmp_path):
    """bench.shadow_quality (the README's "second SIM found" figures) runs on a small population
    and accounts for every archetype; no rate is asserted."""
    from bench.shadow_quality import measure
    from stream.tools.simulate import generate, write_truth

    events, truth = generate(300, 40, 3, fmt="bytes")
    (tmp_path / "sim.ndjson").write_bytes(b"".join(e + b"\n" for e in events))
    write_truth(tmp_path / "truth.csv", truth)
    res = measure(str(tmp_path / "sim.ndjson"), str(tmp_path / "truth.csv"), str(tmp_path / "alarms.ndjson"))
    assert res["switchers"] == res["n"]["switcher"] > 0
    assert 0 <= res["switchers_own_second_sim"] <= res["switchers"]
    assert (tmp_path / "alarms.ndjson").exists()
