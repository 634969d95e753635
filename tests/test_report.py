"""The report: exact metrics on a small hand-made alarms + truth fixture, the table, the PNG, the CLI."""

from __future__ import annotations

import json

import orjson
import pytest

from stream.tools import report
from stream.tools.simulate import simulation_start_ts, write_truth

S0 = simulation_start_ts()
DAY = 86400
END = S0 + 90 * DAY


def _t(day: float) -> int:
    return int(S0 + day * DAY)


def _truth_row(msisdn, archetype, churn_day=None, stop=False):
    return {
        "msisdn": msisdn,
        "archetype": archetype,
        "churn_day": "" if churn_day is None else churn_day,
        "churn_ts": "" if churn_day is None else _t(churn_day),
        "stop_day": churn_day if stop else "",
        "plan": "prepaid",
        "arpu": 50.0,
        "tenure": 400,
        "second_sim": "",
        "notes": "",
    }


TRUTH = (
    [_truth_row(f"86138000000{i:02d}", "loyal") for i in range(1, 11)]
    + [_truth_row(f"86138000001{i:02d}", "seasonal_migrant") for i in range(1, 5)]
    + [_truth_row(f"86138000002{i:02d}", "switcher", 60) for i in range(1, 5)]
    + [_truth_row(f"86138000003{i:02d}", "drifter", 70) for i in range(1, 3)]
    + [_truth_row("8613800000401", "prepaid_lapser", 80)]
    + [_truth_row(f"86138000005{i:02d}", "silent_porter", 50, stop=True) for i in range(1, 4)]
    + [_truth_row("8613800000504", "silent_porter", 85, stop=True)]
)


def _a(msisdn, phase, day, reason="unknown"):
    return {
        "alarm_id": f"{msisdn}-{phase}-{day}",
        "msisdn": msisdn,
        "phase": phase,
        "score": 0.5,
        "signals": [],
        "reason": reason,
        "value_tier": "mid",
        "event_time": _t(day),
        "emitted_at": _t(day) + 5,
        "schema_version": 1,
    }


ALARMS = [
    # loyal: L1 warned then alarmed, L2 warned, L3 warned and recovered
    _a("8613800000001", "warning", 20),
    _a("8613800000001", "alarm", 22),
    _a("8613800000002", "warning", 30),
    _a("8613800000003", "warning", 40),
    _a("8613800000003", "recovered", 45),
    # migrants: M1 seasonal, M2 wrongly a competitor switch
    _a("8613800000101", "warning", 50, "seasonal"),
    _a("8613800000102", "warning", 50, "competitor_switch"),
    # switchers (churn day 60)
    _a("8613800000201", "warning", 40, "competitor_switch"),
    _a("8613800000201", "alarm", 50, "competitor_switch"),
    _a("8613800000202", "warning", 55),
    _a("8613800000203", "warning", 30),
    _a("8613800000203", "recovered", 35),
    _a("8613800000203", "warning", 52),
    _a("8613800000203", "alarm", 58),
    _a("8613800000204", "churned", 62),
    # drifters (churn day 70)
    _a("8613800000301", "warning", 50, "low_usage"),
    _a("8613800000302", "alarm", 65, "low_usage"),
    # lapser (churn day 80)
    _a("8613800000401", "warning", 60, "arrears"),
    _a("8613800000401", "alarm", 70, "arrears"),
    # silent porters: stop day 50 (three) and 85
    _a("8613800000501", "churned", 53),
    _a("8613800000502", "warning", 60),
    _a("8613800000504", "warning", 86),
    # a number that is not in the truth
    _a("8613899999999", "warning", 10),
]


@pytest.fixture
def metrics():
    return report.compute_metrics(ALARMS, [_parsed(r) for r in TRUTH], period_end_ts=END)


def _parsed(r):
    r = dict(r)
    for k in ("churn_day", "churn_ts", "stop_day"):
        r[k] = None if r[k] == "" else int(r[k])
    return r


def test_recall_and_lead_per_archetype(metrics):
    sw = metrics["archetypes"]["switcher"]
    assert sw["n"] == 4
    assert sw["recall_any_7d"] == 2 / 4  # leads 20 and 30 (a warning before a recovery counts); 5 is too late
    assert sw["recall_any_14d"] == 2 / 4
    assert sw["recall_alarm_7d"] == 1 / 4  # alarm leads 10 and 2
    assert sw["recall_alarm_14d"] == 0
    assert sw["median_lead_any_days"] == 20
    assert sw["recall_open_episode_7d"] == 2 / 4  # 20, and 8 for the warning after the recovery
    assert sw["median_lead_open_episode_days"] == 8
    assert sw["median_lead_alarm_days"] == 6
    assert sw["recall_any_before_churn"] == 3 / 4  # the churned-only one is no hit
    dr = metrics["archetypes"]["drifter"]
    assert (dr["recall_any_7d"], dr["recall_alarm_7d"], dr["median_lead_any_days"]) == (1 / 2, 0, 12.5)
    lp = metrics["archetypes"]["prepaid_lapser"]
    assert (lp["recall_any_14d"], lp["recall_alarm_7d"], lp["recall_alarm_14d"]) == (1, 1, 0)
    early = metrics["early_churners"]
    assert early["n"] == 7
    assert early["recall_any_7d"] == 4 / 7
    assert early["recall_any_14d"] == 4 / 7
    assert early["recall_alarm_7d"] == 2 / 7
    assert early["recall_open_episode_7d"] == 4 / 7
    assert early["median_lead_any_days"] == 20
    assert metrics["lead_days_any"]["switcher"] == [5, 20, 30]


def test_false_alarm_rates_on_loyal_and_migrants(metrics):
    assert metrics["loyal"] == {"n": 10, "ever_warning": 0.3, "ever_alarm": 0.1, "ever_flagged": 0.3}
    mig = metrics["seasonal_migrant"]
    assert mig["competitor_switch_share"] == 1 / 4
    assert mig["ever_flagged"] == 2 / 4 and mig["ever_alarm"] == 0


def test_precision_by_phase(metrics):
    p = metrics["precision"]
    assert p["warning"] == {"n_flagged": 13, "true_churners": 7, "precision": 7 / 13}
    assert p["alarm"] == {"n_flagged": 5, "true_churners": 4, "precision": 4 / 5}
    assert p["churned"] == {"n_flagged": 2, "true_churners": 2, "precision": 1.0}
    assert metrics["unknown_msisdns"] == 1
    r = metrics["recall_by_phase"]
    assert r == {"warning_or_alarm_7d": 4 / 11, "alarm_7d": 2 / 11, "churned": 2 / 11}


def test_silent_porters_time_to_flag(metrics):
    sp = metrics["silent_porters"]
    # delays 3 (churned record), 10 (warning), never, 1 (stopped 5 days before the end: censored)
    assert sp == {
        "n": 4,
        "observable_7d": 3,
        "observable_14d": 3,
        "flagged_within_7d": 1 / 3,
        "flagged_within_14d": 2 / 3,
        "median_days_to_flag": 3,
        "never_flagged": 1,
    }
    assert metrics["porter_delays_days"] == [1, 3, 10]


def test_open_episode_at_stop_counts_as_flagged_at_once():
    truth = [_parsed(_truth_row("8613800000501", "silent_porter", 50, stop=True))]
    m = report.compute_metrics([_a("8613800000501", "warning", 48)], truth, period_end_ts=END)
    assert m["silent_porters"]["median_days_to_flag"] == 0 and m["silent_porters"]["flagged_within_7d"] == 1
    m = report.compute_metrics(
        [_a("8613800000501", "warning", 40), _a("8613800000501", "recovered", 45)], truth, period_end_ts=END
    )
    assert m["silent_porters"]["never_flagged"] == 1


def test_targets_and_table(metrics):
    t = {x["name"]: x for x in metrics["targets"]}
    assert len(t) == 5
    assert [x["ok"] for x in metrics["targets"]] == [False, False, False, False, False]
    assert t["loyal ever in alarm phase"]["value"] == 0.1
    table = report.format_table(metrics)
    assert "switcher" in table and "FAIL" in table and "precision by phase" in table


def test_all_targets_pass_for_a_perfect_engine():
    truth = [_parsed(r) for r in TRUTH]
    alarms = [
        _a(r["msisdn"], "alarm", r["churn_day"] - 20, "competitor_switch")
        for r in truth
        if r["archetype"] in report.EARLY_CHURNERS
    ]
    alarms += [_a(r["msisdn"], "churned", r["churn_day"] + 2) for r in truth if r["archetype"] == "silent_porter"]
    m = report.compute_metrics(alarms, truth, period_end_ts=END)
    assert all(x["ok"] for x in m["targets"])
    assert m["precision"]["alarm"]["precision"] == 1.0


def test_png_and_cli(tmp_path, capsys):
    from stream.cli import main

    alarms = tmp_path / "alarms.ndjson"
    alarms.write_bytes(b"\n".join(orjson.dumps(a) for a in ALARMS) + b"\nnot json\n")
    truth = tmp_path / "truth.csv"
    write_truth(truth, TRUTH)
    out_json = tmp_path / "m.json"
    assert (
        main(
            [
                "report",
                "--alarms",
                str(alarms),
                "--truth",
                str(truth),
                "--json",
                str(out_json),
                "--period-end-ts",
                str(END),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "targets:" in text
    png = tmp_path / "alarms.png"  # default: next to the alarms file
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads(out_json.read_text())
    assert m["early_churners"]["recall_any_7d"] == 4 / 7
    assert m["silent_porters"]["flagged_within_14d"] == 2 / 3
    other = tmp_path / "x.png"
    report.write_png(m, other)
    assert other.read_bytes()[:4] == b"\x89PNG"
