"""Alarm quality against simulator ground truth: ``churnwatch report --alarms FILE --truth FILE``.

Inputs: alarm records as NDJSON (the engine's output, ``schemas/alarm.schema.json``) and the
simulator's ground-truth CSV (``stream/tools/simulate/``). Output: a table on stdout, the metrics as
JSON (``--json``) and a PNG (``--png``, default ``<alarms>.png``): lead-time distribution and
precision/recall per phase.

Definitions (all per subscriber):

- **hit** (issue text): an alarm record of phase ``warning`` or ``alarm`` (the "any" columns) —
  or of phase ``alarm`` only (the "alarm" columns) — with ``event_time`` before the churn time
  (``churn_ts``). **lead** = (churn_ts - event_time of the first hit) in days; recall@7d / @14d =
  share of the archetype with lead >= 7 / 14 days. A stricter view is reported beside it
  (``recall_open_episode_7d``, the "ep@7d" column): only records after the subscriber's last
  ``recovered`` record before the churn count, i.e. the warning was still standing at churn.
- **ever in a phase** (loyal, seasonal migrants): share with at least one record of that phase
  at any time; ``flagged`` = a warning or alarm record. The "ever warned" target uses
  ``flagged`` (an alarm is a warning that went further).
- **migrants as competitor switches**: share of seasonal migrants with any record whose
  ``reason`` is ``competitor_switch``.
- **precision by phase**: of the subscribers with any record of the phase, the share who are true
  churners (switcher, silent_porter, drifter, prepaid_lapser). Alarmed numbers missing from the
  truth count as false positives (``unknown_msisdns`` says how many).
- **silent porters, time to flag**: days from the stop (``stop_day`` start = churn_ts) to the first
  warning/alarm/churned record at or after it; 0 when an unrecovered warning/alarm episode was
  already open at the stop. Porters whose stop is less than 7 (14) days before the end of the
  observed period are censored out of the within-7 (14) days share; the period end is
  ``--period-end-ts`` or, by default, the latest ``event_time`` among the alarm records.

Targets (issue text): recall@7d >= 90% for switchers, drifters and lapsers together; <= 1% of
loyal ever in alarm and <= 10% ever warned; <= 5% of seasonal migrants reported as competitor
switches; >= 90% of silent porters flagged within 14 days of stopping.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import orjson

__all__ = [
    "load_alarms",
    "load_truth",
    "compute_metrics",
    "targets",
    "format_table",
    "write_png",
    "recharge_times",
    "add_arguments",
    "run",
]

logger = logging.getLogger(__name__)

ARCHETYPES = ("loyal", "switcher", "silent_porter", "seasonal_migrant", "drifter", "prepaid_lapser")
CHURNERS = ("switcher", "silent_porter", "drifter", "prepaid_lapser")
EARLY_CHURNERS = ("switcher", "drifter", "prepaid_lapser")  # those with precursors: lead-time target
DAY_S = 86400.0


def load_alarms(path: str | Path) -> tuple[list[dict], int]:
    """Alarm records from NDJSON; returns (records, unreadable line count)."""
    recs, bad = [], 0
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = orjson.loads(line)
                if (
                    not isinstance(r, dict)
                    or "msisdn" not in r
                    or "phase" not in r
                    or not isinstance(r.get("event_time"), (int, float))
                ):
                    raise ValueError
            except (orjson.JSONDecodeError, ValueError):
                bad += 1
                continue
            recs.append(r)
    return recs, bad


def load_truth(path: str | Path) -> list[dict]:
    from .simulate import read_truth

    return read_truth(path)


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _first_hit(recs: list[dict], churn_ts: float, phases: tuple[str, ...], open_episode: bool = False) -> float | None:
    """event_time of the first record of ``phases`` before churn_ts; with ``open_episode``, only
    records after the last ``recovered`` record before churn_ts count."""
    before = [r for r in recs if r["event_time"] < churn_ts]
    last_rec = -math.inf
    if open_episode:
        last_rec = max((r["event_time"] for r in before if r["phase"] == "recovered"), default=-math.inf)
    hits = [r["event_time"] for r in before if r["phase"] in phases and r["event_time"] > last_rec]
    return min(hits) if hits else None


def recharge_times(events_path: str | Path) -> dict[str, list[float]]:
    """The recharge times per msisdn in an events file (NDJSON; unreadable lines skipped)."""
    out: dict[str, list[float]] = defaultdict(list)
    with open(events_path, "rb") as fh:
        for line in fh:
            if b"recharge" not in line:
                continue
            try:
                e = orjson.loads(line)
                if e.get("type") == "recharge":
                    out[str(e["msisdn"])].append(float(e["ts"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                continue
    return out


def _lapsers_by_history(truth: list[dict], leads: dict[str, float], recharges: dict[str, list[float]]) -> dict:
    """Prepaid lapsers split by the recharges they made in the data before their churn day: 0-1
    (no interval of their own) vs 2 or more, each with its recall at 7 days' lead."""
    groups: dict[str, list[str]] = {"0-1": [], "2+": []}
    for r in truth:
        if r["archetype"] == "prepaid_lapser" and r["churn_ts"] is not None:
            n = sum(t < r["churn_ts"] for t in recharges.get(r["msisdn"], ()))
            groups["0-1" if n <= 1 else "2+"].append(r["msisdn"])
    return {
        k: {"n": len(v), "recall_any_7d": _share(sum(leads.get(x, -1.0) >= 7 for x in v), len(v))}
        for k, v in groups.items()
    }


def _silent_porters(truth: list[dict], by_sub: dict, period_end_ts: float | None, n: int) -> dict:
    """Silent porters: time to flag after the stop, and the share flagged within 7 and 14 days of it
    (counted only where the data reach that far)."""
    delays: list[float] = []
    n7 = n14 = f7 = f14 = never = 0
    for r in truth:
        if r["archetype"] != "silent_porter" or r["churn_ts"] is None:
            continue
        stop = float(r["churn_ts"])
        recs = by_sub.get(r["msisdn"], [])
        open_ep = _first_hit(recs, stop, ("warning", "alarm"), open_episode=True) is not None
        after = [
            x["event_time"] for x in recs if x["event_time"] >= stop and x["phase"] in ("warning", "alarm", "churned")
        ]
        delay = 0.0 if open_ep else ((min(after) - stop) / DAY_S if after else None)
        if delay is None:
            never += 1
        else:
            delays.append(delay)
        for horizon in (7, 14):
            observable = period_end_ts is None or stop + horizon * DAY_S <= period_end_ts
            if not observable:
                continue
            hit = delay is not None and delay <= horizon
            if horizon == 7:
                n7 += 1
                f7 += hit
            else:
                n14 += 1
                f14 += hit
    return {
        "n": n,
        "observable_7d": n7,
        "observable_14d": n14,
        "flagged_within_7d": _share(f7, n7),
        "flagged_within_14d": _share(f14, n14),
        "median_days_to_flag": _median(delays),
        "never_flagged": never,
        "_delays": delays,
    }


def compute_metrics(
    alarms: Iterable[dict],
    truth: list[dict],
    period_end_ts: float | None = None,
    recharges: dict[str, list[float]] | None = None,
) -> dict:
    """All report metrics as a plain dict (JSON-ready). ``truth`` rows as from ``load_truth``
    (``churn_ts``/``stop_day`` int or None); ``recharges`` (from :func:`recharge_times`) adds the
    prepaid lapsers split by recharge history."""
    by_sub: dict[str, list[dict]] = defaultdict(list)
    n_records = 0
    for r in alarms:
        by_sub[str(r["msisdn"])].append(r)
        n_records += 1
    for v in by_sub.values():
        v.sort(key=lambda r: r["event_time"])
    truth_by = {r["msisdn"]: r for r in truth}
    if period_end_ts is None:
        period_end_ts = max((r["event_time"] for v in by_sub.values() for r in v), default=None)

    per_arch: dict[str, dict] = {}
    leads_any: dict[str, list[float]] = {}
    lapsers_split: dict | None = None
    for arch in ARCHETYPES:
        rows = [r for r in truth if r["archetype"] == arch]
        n = len(rows)
        m: dict = {"n": n}
        phases_of = [{x["phase"] for x in by_sub.get(r["msisdn"], ())} for r in rows]
        m["ever_warning"] = _share(sum("warning" in p for p in phases_of), n)
        m["ever_alarm"] = _share(sum("alarm" in p for p in phases_of), n)
        m["ever_flagged"] = _share(sum(bool(p & {"warning", "alarm"}) for p in phases_of), n)
        m["ever_churned"] = _share(sum("churned" in p for p in phases_of), n)
        m["competitor_switch_share"] = _share(
            sum(any(x.get("reason") == "competitor_switch" for x in by_sub.get(r["msisdn"], ())) for r in rows), n
        )
        if arch in CHURNERS:
            la, lal, lep = [], [], []
            for r in rows:
                recs = by_sub.get(r["msisdn"], [])
                t = _first_hit(recs, r["churn_ts"], ("warning", "alarm"))
                if t is not None:
                    la.append((r["churn_ts"] - t) / DAY_S)
                t = _first_hit(recs, r["churn_ts"], ("warning", "alarm"), open_episode=True)
                if t is not None:
                    lep.append((r["churn_ts"] - t) / DAY_S)
                t = _first_hit(recs, r["churn_ts"], ("alarm",))
                if t is not None:
                    lal.append((r["churn_ts"] - t) / DAY_S)
            leads_any[arch] = la
            if arch == "prepaid_lapser" and recharges is not None:
                first_lead = {}
                for r in rows:
                    t = _first_hit(by_sub.get(r["msisdn"], []), r["churn_ts"], ("warning", "alarm"))
                    if t is not None:
                        first_lead[r["msisdn"]] = (r["churn_ts"] - t) / DAY_S
                lapsers_split = _lapsers_by_history(truth, first_lead, recharges)
            m["recall_any_7d"] = _share(sum(x >= 7 for x in la), n)
            m["recall_any_14d"] = _share(sum(x >= 14 for x in la), n)
            m["recall_alarm_7d"] = _share(sum(x >= 7 for x in lal), n)
            m["recall_alarm_14d"] = _share(sum(x >= 14 for x in lal), n)
            m["recall_any_before_churn"] = _share(len(la), n)
            m["median_lead_any_days"] = _median(la)
            m["median_lead_alarm_days"] = _median(lal)
            m["recall_open_episode_7d"] = _share(sum(x >= 7 for x in lep), n)
            m["median_lead_open_episode_days"] = _median(lep)
            m["_leads_alarm"] = lal
            m["_leads_episode"] = lep
        per_arch[arch] = m

    early_rows = [r for r in truth if r["archetype"] in EARLY_CHURNERS]
    ne = len(early_rows)
    early_leads = [x for a in EARLY_CHURNERS for x in leads_any.get(a, [])]
    early_leads_alarm = [x for a in EARLY_CHURNERS for x in per_arch[a].get("_leads_alarm", [])]
    early_leads_ep = [x for a in EARLY_CHURNERS for x in per_arch[a].get("_leads_episode", [])]
    early = {
        "n": ne,
        "recall_any_7d": _share(sum(x >= 7 for x in early_leads), ne),
        "recall_any_14d": _share(sum(x >= 14 for x in early_leads), ne),
        "recall_alarm_7d": _share(sum(x >= 7 for x in early_leads_alarm), ne),
        "recall_alarm_14d": _share(sum(x >= 14 for x in early_leads_alarm), ne),
        "median_lead_any_days": _median(early_leads),
        "median_lead_alarm_days": _median(early_leads_alarm),
        "recall_open_episode_7d": _share(sum(x >= 7 for x in early_leads_ep), ne),
        "median_lead_open_episode_days": _median(early_leads_ep),
    }

    # precision by phase
    churner_set = {r["msisdn"] for r in truth if r["archetype"] in CHURNERS}
    precision = {}
    for phase in ("warning", "alarm", "churned"):
        subs = [s for s, v in by_sub.items() if any(x["phase"] == phase for x in v)]
        tp = sum(s in churner_set for s in subs)
        precision[phase] = {"n_flagged": len(subs), "true_churners": tp, "precision": _share(tp, len(subs))}
    n_churners = len(churner_set)
    recall_by_phase = {
        "warning_or_alarm_7d": _share(sum(x >= 7 for a in CHURNERS for x in leads_any.get(a, [])), n_churners),
        "alarm_7d": _share(sum(x >= 7 for a in CHURNERS for x in per_arch[a].get("_leads_alarm", [])), n_churners),
        "churned": _share(
            sum(any(x["phase"] == "churned" for x in by_sub.get(s, ())) for s in churner_set), n_churners
        ),
    }

    porters = _silent_porters(truth, by_sub, period_end_ts, per_arch["silent_porter"]["n"])
    delays = porters.pop("_delays")

    for m in per_arch.values():
        m.pop("_leads_alarm", None)
        m.pop("_leads_episode", None)
    metrics = {
        "n_subscribers": len(truth),
        "n_alarm_records": n_records,
        "n_alarmed_subscribers": len(by_sub),
        "unknown_msisdns": sum(1 for s in by_sub if s not in truth_by),
        "period_end_ts": period_end_ts,
        "archetypes": per_arch,
        "early_churners": early,
        "loyal": {k: per_arch["loyal"][k] for k in ("n", "ever_warning", "ever_alarm", "ever_flagged")},
        "seasonal_migrant": {
            k: per_arch["seasonal_migrant"][k]
            for k in ("n", "ever_warning", "ever_alarm", "ever_flagged", "competitor_switch_share")
        },
        "precision": precision,
        "recall_by_phase": recall_by_phase,
        "silent_porters": porters,
        "lead_days_any": {a: sorted(round(x, 3) for x in v) for a, v in leads_any.items()},
        "porter_delays_days": sorted(round(x, 3) for x in delays),
    }
    if recharges is not None:
        metrics["lapsers_by_recharges"] = lapsers_split
    metrics["targets"] = targets(metrics)
    return metrics


def targets(m: dict) -> list[dict]:
    """The issue's acceptance targets, each with the measured value and ok (None = no data)."""

    def t(name, value, op, goal):
        ok = None if value is None else (value >= goal if op == ">=" else value <= goal)
        return {"name": name, "value": value, "target": f"{op} {goal:.0%}", "ok": ok}

    return [
        t("recall, lead >= 7d (switchers+drifters+lapsers)", m["early_churners"]["recall_any_7d"], ">=", 0.90),
        t("loyal ever in alarm phase", m["loyal"]["ever_alarm"], "<=", 0.01),
        t("loyal ever warned (warning or alarm)", m["loyal"]["ever_flagged"], "<=", 0.10),
        t("seasonal migrants reported competitor_switch", m["seasonal_migrant"]["competitor_switch_share"], "<=", 0.05),
        t("silent porters flagged within 14d of stop", m["silent_porters"]["flagged_within_14d"], ">=", 0.90),
    ]


def _pct(x) -> str:
    return "   -  " if x is None else f"{x:6.1%}"


def _num(x) -> str:
    return "    -" if x is None else f"{x:5.1f}"


def format_table(m: dict) -> str:
    out = []
    out.append(
        f"subscribers {m['n_subscribers']}, alarm records {m['n_alarm_records']}, alarmed subscribers "
        f"{m['n_alarmed_subscribers']} (not in truth: {m['unknown_msisdns']})"
    )
    out.append("")
    out.append(
        f"{'archetype':<18}{'n':>6}  {'any@7d':>6} {'any@14d':>7} {'alm@7d':>6} {'alm@14d':>7} {'ep@7d':>6} {'lead_any':>8} {'lead_alm':>8}  "
        f"{'warned':>6} {'alarm':>6} {'churnd':>6} {'compsw':>6}"
    )
    for a, x in m["archetypes"].items():
        out.append(
            f"{a:<18}{x['n']:>6}  {_pct(x.get('recall_any_7d'))} {_pct(x.get('recall_any_14d')):>7} {_pct(x.get('recall_alarm_7d'))} "
            f"{_pct(x.get('recall_alarm_14d')):>7} {_pct(x.get('recall_open_episode_7d'))} {_num(x.get('median_lead_any_days')):>8} {_num(x.get('median_lead_alarm_days')):>8}  "
            f"{_pct(x['ever_flagged'])} {_pct(x['ever_alarm'])} {_pct(x['ever_churned'])} {_pct(x['competitor_switch_share'])}"
        )
    e = m["early_churners"]
    out.append(
        f"{'sw+drift+lapse':<18}{e['n']:>6}  {_pct(e['recall_any_7d'])} {_pct(e['recall_any_14d']):>7} {_pct(e['recall_alarm_7d'])} "
        f"{_pct(e['recall_alarm_14d']):>7} {_pct(e['recall_open_episode_7d'])} {_num(e['median_lead_any_days']):>8} {_num(e['median_lead_alarm_days']):>8}"
    )
    for k, v in m.get("lapsers_by_recharges", {}).items():
        out.append(f"{'  lapsers, ' + k + ' rch':<18}{v['n']:>6}  {_pct(v['recall_any_7d'])}")
    out.append("  (any = warning or alarm record before churn; ep = the same, not recovered since; lead = median days;")
    out.append(
        "   warned = ever warning or alarm; churnd = ever churned; compsw = any record with reason competitor_switch)"
    )
    out.append("")
    out.append(
        "precision by phase: "
        + ", ".join(
            f"{p} {_pct(v['precision']).strip()} ({v['true_churners']}/{v['n_flagged']})"
            for p, v in m["precision"].items()
        )
    )
    sp = m["silent_porters"]
    out.append(
        f"silent porters: flagged within 7d {_pct(sp['flagged_within_7d']).strip()} (of {sp['observable_7d']}), "
        f"within 14d {_pct(sp['flagged_within_14d']).strip()} (of {sp['observable_14d']}), "
        f"median {_num(sp['median_days_to_flag']).strip()} days, never {sp['never_flagged']}"
    )
    out.append("")
    out.append("targets:")
    for t in m["targets"]:
        status = "n/a " if t["ok"] is None else ("PASS" if t["ok"] else "FAIL")
        out.append(f"  [{status}] {t['name']:<50} {_pct(t['value']).strip():>7}  (target {t['target']})")
    return "\n".join(out)


def write_png(m: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [3, 2.4, 2]})
    leads = m["lead_days_any"]
    data = [leads.get(a, []) for a in EARLY_CHURNERS]
    all_leads = [x for v in data for x in v]
    hi = max([30.0] + all_leads)
    bins = list(range(0, int(math.ceil(hi)) + 2, 2))
    if all_leads:
        ax1.hist(
            data,
            bins=bins,
            stacked=True,
            label=[
                f"{a} ({len(v)}/{m['archetypes'][a]['n']} warned before churn)"
                for a, v in zip(EARLY_CHURNERS, data, strict=False)
            ],
        )
    ax1.axvline(7, color="k", ls="--", lw=1)
    ax1.axvline(14, color="k", ls=":", lw=1)
    ax1.set_xlabel("lead time before churn (days), first warning/alarm of the episode")
    ax1.set_ylabel("churners")
    ax1.set_title(f"Lead time (recall >= 7d: {_pct(m['early_churners']['recall_any_7d']).strip()})")
    ax1.legend(fontsize=8)

    phases = ["warning", "alarm", "churned"]
    prec = [m["precision"][p]["precision"] or 0.0 for p in phases]
    rbp = m["recall_by_phase"]
    rec = [rbp["warning_or_alarm_7d"] or 0.0, rbp["alarm_7d"] or 0.0, rbp["churned"] or 0.0]
    xs = list(range(len(phases)))
    b1 = ax2.bar([x - 0.2 for x in xs], prec, width=0.4, label="precision (share true churners)")
    b2 = ax2.bar([x + 0.2 for x in xs], rec, width=0.4, label="recall (all churners; >= 7d lead; churned: any)")
    ax2.bar_label(b1, fmt="%.2f", fontsize=8)
    ax2.bar_label(b2, fmt="%.2f", fontsize=8)
    ax2.set_xticks(xs, ["warning", "alarm", "churned"])
    ax2.set_ylim(0, 1.15)
    ax2.set_title("Precision and recall per phase")
    ax2.legend(fontsize=8, loc="upper left")

    sp = m["silent_porters"]
    delays = m.get("porter_delays_days", [])
    if delays:
        ax3.hist(delays, bins=list(range(0, int(max(delays)) + 2)), color="tab:orange")
    ax3.axvline(14, color="k", ls=":", lw=1)
    ax3.set_xlabel("days from stop to first flag")
    ax3.set_ylabel("silent porters")
    ax3.set_title(f"Silent porters: {_pct(sp['flagged_within_14d']).strip()} within 14d, never {sp['never_flagged']}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alarms", required=True, help="alarm records, NDJSON")
    p.add_argument("--truth", required=True, help="ground-truth CSV from `churnwatch simulate --truth`")
    p.add_argument(
        "--events", help="the events file (NDJSON): adds prepaid lapsers split by recharges before churn (0-1, 2+)"
    )
    p.add_argument("--png", help="chart file (default: next to the alarms file, <alarms>.png)")
    p.add_argument("--json", help="write the metrics as JSON to this file")
    p.add_argument(
        "--period-end-ts", type=float, help="end of the observed period (Unix s); default: latest alarm event_time"
    )


def run(args: argparse.Namespace) -> int:
    alarms, bad = load_alarms(args.alarms)
    if bad:
        print(f"report: skipped {bad} unreadable alarm line(s)", file=sys.stderr)
    truth = load_truth(args.truth)
    rch = recharge_times(args.events) if args.events else None
    m = compute_metrics(alarms, truth, period_end_ts=args.period_end_ts, recharges=rch)
    print(format_table(m))
    png = Path(args.png) if args.png else Path(args.alarms).with_suffix(".png")
    write_png(m, png)
    print(f"\nchart: {png}")
    if args.json:
        Path(args.json).write_text(json.dumps(m, indent=2))
        print(f"metrics: {args.json}")
    return 0
