"""``churnwatch tune --events FILE --truth FILE --budget-warned 0.05 [--lead-days 7] --out config.toml``

Fits the engine's warning/alarm thresholds and weights to an operator's own labelled history.

0. **Learned prior.** The no-recharge prior (``recharge_prior_unseen_factor``) is set from the
   history's prepaid non-churners (:func:`learn_recharge_priors`; ``--no-learn-priors`` keeps the
   base's; a value in the ``--config`` file wins).
1. **One replay.** The events run once through the engine (the backtest's batch step, config
   ``--config`` or the defaults), and every daily decision's features (the traffic drop, circle
   erosion and drift, competitor share, recharge lapse, silence, ... of each subscriber decided
   that day) are recorded, with the care-line dials' immediate alarms.
2. **Many candidates on the recorded features.** A candidate config re-runs only the decision
   (the engine's own ``_decide_arrays``, vectorised over every recorded subscriber-day at once):
   milliseconds per candidate, not a replay. A random search over the ranges below, then a
   coordinate search around the best, maximises the recall (churners with a warning or alarm at
   least ``--lead-days`` before their churn date) subject to the budget: the share of
   non-churners ever warned or alarmed <= ``--budget-warned`` and ever in the alarm phase <=
   ``--budget-alarm``.
3. **Checked by a real backtest.** The best config runs through the engine over the same events;
   both the predicted and the measured recall and budget are printed (they differ a little: the
   replay keeps the recorded run's choice of which subscribers are decided on a day).

Output: a TOML with the base config's keys and the tuned ones (``CHURNWATCH_CONFIG`` or
``--config`` load it), the recall/budget curve as a table (best recall found within each budget)
and a PNG (``--png``, default ``<out>.png``).

Truth (``--truth``, CSV with a header; ``schemas/README.md``, "Truth for tune"): either an
operator's list of churners, ``msisdn,churn_date[,reason]`` (``churn_date`` ``YYYY-MM-DD`` in the
config's time zone, or Unix seconds; every msisdn of the events that is not listed is a
non-churner; ``--ignore-reason R`` leaves out churners of that reason, e.g. number ports without
any precursor), or the simulator's truth CSV (``archetype`` column: switchers, drifters and
prepaid lapsers are the churners, silent porters are left out, the rest are non-churners).

What is tuned: ``TUNED`` below (score weights, warning/alarm scores, the drop, trend, erosion,
drift and competitor-share thresholds, the drop's significance, the overdue ratio and weekly drop
of a lapse shown by fading traffic). Not tuned (they shape the
features themselves, which are recorded once): windows, recharge-lapse tolerances and priors,
silence days, circle rules.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as _dt
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

__all__ = [
    "TUNED",
    "recording_engine",
    "load_truth_any",
    "Tuner",
    "measure",
    "backtest_measure",
    "add_arguments",
    "run",
]

DAY_S = 86400.0
EARLY = ("switcher", "drifter", "prepaid_lapser")
IGNORED_ARCHETYPES = ("silent_porter",)

# key -> (low, high): the search range (a drift_threshold of 0 switches the long memory off)
TUNED: dict[str, tuple[float, float]] = {
    "warn_score": (0.2, 0.6),
    "alarm_score": (0.5, 0.9),
    "drop_threshold": (0.35, 0.8),
    "drop_min_z": (0.0, 4.0),
    "trend_threshold": (0.3, 0.8),
    "erosion_threshold": (0.4, 0.9),
    "drift_threshold": (0.0, 0.9),
    "lapse_decline_factor": (1.0, 1.6),
    "lapse_decline_drop": (0.2, 0.7),
    "competitor_rise_threshold": (0.1, 0.6),
    "w_drop": (0.3, 1.0),
    "w_erosion": (0.3, 1.0),
    "w_recharge_lapse": (0.2, 0.8),
    "w_silence": (0.2, 0.8),
    "w_competitor_contacts": (0.15, 0.8),
}
# the engine arrays _decide_arrays reads beside the features
_ROW_ARRAYS = ("plan", "arpu_c", "key_group", "activated")


# ---------------------------------------------------------------------------- recording


def recording_engine(cfg):
    """An :class:`~stream.engine.Engine` that records every day decision's features (all of them,
    also the long memory its config may switch off) and its immediate alarms."""
    from stream.engine import Engine

    class Recorder(Engine):
        all_features = True

        def __init__(self, config):
            super().__init__(config, clock=None)
            self.rec_f: list[dict] = []
            self.rec_ctx: list[dict] = []
            self.rec_day: list[np.ndarray] = []
            self.rec_ms: list[str] = []
            self.rec_imm: list[tuple[str, float]] = []
            self.rec_raw: list[np.ndarray] = []  # the recorded run's own decisions (replay check)
            self._deciding = False

        def _evaluate_rows(self, rows, D, now_s):
            self._deciding = True
            try:
                return super()._evaluate_rows(rows, D, now_s)
            finally:
                self._deciding = False

        def _decide_arrays(self, rows, f, D):
            if self._deciding:
                self.rec_f.append({k: np.array(v, copy=True) for k, v in f.items() if _is_column(v, len(rows))})
                self.rec_ctx.append({k: self._a[k][rows].copy() for k in _ROW_ARRAYS})
                self.rec_day.append(np.full(len(rows), D, dtype=np.int64))
                self.rec_ms.extend(self.msisdns(rows))
                dec = super()._decide_arrays(rows, f, D)
                self.rec_raw.append(dec["raw"].copy())
                return dec
            return super()._decide_arrays(rows, f, D)

        def immediate(self, hits):
            out = super().immediate(hits)
            self.rec_imm.extend((a["msisdn"], float(a["event_time"])) for a in out)
            return out

    return Recorder(cfg)


def _is_column(v, n: int) -> bool:
    return isinstance(v, np.ndarray) and v.ndim == 1 and len(v) == n


# ---------------------------------------------------------------------------- truth


def load_truth_any(path: str | os.PathLike, cfg, ignore_reasons: tuple[str, ...] = ()) -> dict:
    """``{"churn": {msisdn: churn_ts}, "negatives": set | None, "ignored": set}`` from either truth
    format (module docstring); ``negatives`` None = every other msisdn seen."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no rows")
    churn: dict[str, float] = {}
    ignored: set[str] = set()
    if "archetype" in rows[0]:  # the simulator's ground truth
        negatives: set[str] | None = set()
        for r in rows:
            ms, arch = r["msisdn"], r["archetype"]
            if arch in EARLY and r.get("churn_ts"):
                churn[ms] = float(r["churn_ts"])
            elif arch in IGNORED_ARCHETYPES or r.get("churn_ts"):
                ignored.add(ms)
            else:
                negatives.add(ms)
        return {"churn": churn, "negatives": negatives, "ignored": ignored}
    if "msisdn" not in rows[0] or "churn_date" not in rows[0]:
        raise ValueError(f"{path}: needs the columns msisdn,churn_date[,reason] (or the simulator's truth CSV)")
    for i, r in enumerate(rows, 2):
        ms, d = (r.get("msisdn") or "").strip(), (r.get("churn_date") or "").strip()
        if not ms.isdigit():
            raise ValueError(f"{path}:{i}: msisdn {ms!r} is not digits")
        if (r.get("reason") or "").strip() in ignore_reasons:
            ignored.add(ms)
            continue
        churn[ms] = _churn_ts(d, cfg, f"{path}:{i}")
    return {"churn": churn, "negatives": None, "ignored": ignored}


def _churn_ts(d: str, cfg, where: str) -> float:
    try:
        if d.replace(".", "", 1).isdigit():
            return float(d)
        day = (_dt.date.fromisoformat(d) - _dt.date(1970, 1, 1)).days
        return float(cfg.day_start_s(day))
    except ValueError as exc:
        raise ValueError(f"{where}: churn_date {d!r} is neither YYYY-MM-DD nor Unix seconds") from exc


# ---------------------------------------------------------------------------- learned priors


def learn_recharge_priors(events_path: str | os.PathLike, cfg, churners: set[str], min_subs: int = 30) -> dict:
    """The no-recharge prior learned from the history's prepaid non-churners (issue 13: a cadence
    from the population where a subscriber's own history is too short): a prepaid subscriber with
    no recharge since first seen is overdue 2 days after the 99th percentile of those
    non-churners' first recharge after they were first seen (``recharge_prior_unseen_factor``, as
    a multiple of ``recharge_prior_days``). Empty when fewer than ``min_subs`` show one. (Their mean
    gaps would be a biased prior for the 0-1 recharge case: in a short history, the subscribers
    with enough recharges to measure a gap are the frequent ones.)"""
    first: dict[str, float] = {}
    rch_first: dict[str, float] = {}
    prepaid: set[str] = set()
    with open(events_path, "rb") as fh:
        for line in fh:
            try:
                e = orjson.loads(line)
                m, ts = e["msisdn"], float(e["ts"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if not isinstance(m, str) or m in churners:
                continue
            if ts < first.get(m, math.inf):
                first[m] = ts
            t = e.get("type")
            if t == "recharge" and ts < rch_first.get(m, math.inf):
                rch_first[m] = ts
            elif t == "profile" and e.get("plan") == "prepaid":
                prepaid.add(m)
    waits = [(rch_first[m] - first[m]) / DAY_S for m in prepaid if m in rch_first]
    if len(waits) < min_subs or cfg.recharge_prior_days <= 0:
        return {}
    wait = float(np.percentile(waits, 99)) + 2.0
    return {
        "recharge_prior_unseen": True,
        "recharge_prior_unseen_factor": round(max(1.0, wait / cfg.recharge_prior_days), 2),
    }


# ---------------------------------------------------------------------------- search


class Tuner:
    """Candidates scored on the recorded decisions (see the module docstring)."""

    def __init__(self, recorder, truth: dict, lead_days: float) -> None:
        self.base = recorder.config
        self.n_rows = sum(len(d) for d in recorder.rec_day)
        keys = set.intersection(*(set(f) for f in recorder.rec_f)) if recorder.rec_f else set()
        self.f = {k: np.concatenate([f[k] for f in recorder.rec_f]) for k in keys}
        self.ctx = {k: np.concatenate([c[k] for c in recorder.rec_ctx]) for k in _ROW_ARRAYS} if keys else {}
        day = np.concatenate(recorder.rec_day) if recorder.rec_day else np.zeros(0, dtype=np.int64)
        t = day * DAY_S - self.base.utc_offset_s  # each decision's event time: the start of its day
        names = sorted(set(recorder.rec_ms) | {m for m, _ in recorder.rec_imm} | set(truth["churn"]))
        ident = {m: i for i, m in enumerate(names)}
        sub = np.array([ident[m] for m in recorder.rec_ms], dtype=np.int64)
        self.n_ids = len(names)
        churn = np.full(self.n_ids, np.nan)
        for m, ts in truth["churn"].items():
            churn[ident[m]] = ts
        pos = ~np.isnan(churn)
        neg = np.zeros(self.n_ids, dtype=bool)
        if truth["negatives"] is None:
            neg[:] = ~pos
        else:
            neg[[ident[m] for m in truth["negatives"] if m in ident]] = True
        neg[[ident[m] for m in truth["ignored"] if m in ident]] = False
        self.pos, self.neg = pos, neg
        self.n_pos = int(pos.sum())
        self.n_neg = int(neg.sum()) if truth["negatives"] is None else len(truth["negatives"])
        lead_s = lead_days * DAY_S
        self.sub = sub
        self.early = pos[sub] & (t <= np.nan_to_num(churn[sub], nan=-np.inf) - lead_s)
        self.neg_row = neg[sub]
        # care-line dials' immediate alarms do not depend on the tuned keys
        self.imm_hit = np.zeros(self.n_ids, dtype=bool)
        self.imm_any = np.zeros(self.n_ids, dtype=bool)
        for m, ts in recorder.rec_imm:
            i = ident[m]
            self.imm_any[i] = True
            if pos[i] and ts <= churn[i] - lead_s:
                self.imm_hit[i] = True
        self.tried: list[dict] = []

    def raw(self, cfg) -> np.ndarray:
        """The raw phase (0 healthy .. 3 churned) of every recorded decision under ``cfg``."""
        from stream.engine import Engine

        return Engine.decide_recorded(cfg, self.f, self.ctx)["raw"]

    def score(self, params: dict, budget_warned: float, budget_alarm: float) -> dict | None:
        try:
            cfg = dataclasses.replace(self.base, **params)
        except (ValueError, TypeError):
            return None
        raw = self.raw(cfg)
        hit = np.bincount(self.sub[(raw >= 1) & self.early], minlength=self.n_ids) > 0
        flagged = np.bincount(self.sub[(raw >= 1) & self.neg_row], minlength=self.n_ids) > 0
        alarmed = np.bincount(self.sub[(raw >= 2) & self.neg_row], minlength=self.n_ids) > 0
        imm_neg = self.imm_any & self.neg
        res = {
            "params": dict(params),
            "recall": _share(int(((hit | self.imm_hit) & self.pos).sum()), self.n_pos),
            "warned": _share(int(((flagged | imm_neg) & self.neg).sum()), self.n_neg),
            "alarmed": _share(int(((alarmed | imm_neg) & self.neg).sum()), self.n_neg),
        }
        res["ok"] = res["warned"] <= budget_warned and res["alarmed"] <= budget_alarm
        self.tried.append(res)
        return res

    def search(
        self, budget_warned: float, budget_alarm: float, n_random: int = 300, seed: int = 1, rounds: int = 3
    ) -> dict:
        """Random search then coordinate search; the best feasible candidate (the base config's
        values when none is)."""
        rng = np.random.default_rng(seed)
        base = {k: float(getattr(self.base, k)) for k in TUNED}
        best = self.score(base, budget_warned, budget_alarm)
        key = _objective(budget_warned, budget_alarm)
        for i in range(n_random):
            if i % 2 == 0 or best is None:  # anywhere in the ranges
                p = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in TUNED.items()}
                if rng.random() < 0.5:
                    p["drift_threshold"] = 0.0
            else:  # near the best so far
                p = {
                    k: float(np.clip(v + rng.normal(0, 0.08 * (TUNED[k][1] - TUNED[k][0])), *TUNED[k]))
                    for k, v in best["params"].items()
                }
            r = self.score(_rounded(p), budget_warned, budget_alarm)
            if r is not None and (best is None or key(r) > key(best)):
                best = r
        for _ in range(rounds):
            improved = False
            for k, (lo, hi) in TUNED.items():
                for step in (-0.05, 0.05, -0.02, 0.02):
                    p = dict(best["params"])
                    p[k] = float(np.clip(p[k] + step * (hi - lo) / 0.5, lo, hi))
                    r = self.score(_rounded(p), budget_warned, budget_alarm)
                    if r is not None and key(r) > key(best):
                        best, improved = r, True
            if not improved:
                break
        return best

    def curve(self, budgets=(0.01, 0.02, 0.03, 0.05, 0.08, 0.10, 0.15, 0.20)) -> list[dict]:
        """The best recall among the candidates tried within each budget of non-churners warned."""
        out = []
        for b in budgets:
            ok = [r for r in self.tried if r["warned"] <= b]
            best = max(ok, key=lambda r: (r["recall"], -r["warned"]), default=None)
            out.append(
                {"budget": b, "recall": best["recall"] if best else None, "warned": best["warned"] if best else None}
            )
        return out


def _objective(budget_warned: float, budget_alarm: float):
    def key(r):
        if r["ok"]:
            return (1, r["recall"], -r["warned"])
        return (0, -(max(0.0, r["warned"] - budget_warned) + max(0.0, r["alarmed"] - budget_alarm)), r["recall"])

    return key


def _rounded(p: dict) -> dict:
    out = {k: round(v, 3) for k, v in p.items()}
    out["alarm_score"] = max(out["alarm_score"], out["warn_score"])
    if out["drift_threshold"] < 0.05:
        out["drift_threshold"] = 0.0
    if out["drop_min_z"] < 0.2:
        out["drop_min_z"] = 0.0
    return out


def _share(k: int, n: int) -> float:
    return k / n if n else 0.0


# ---------------------------------------------------------------------------- measuring a config


def measure(alarms_path: str, truth: dict, lead_days: float, seen: set[str]) -> dict:
    """Recall / non-churners warned / alarmed from a backtest's alarm file (the tune's definitions)."""
    first_any: dict[str, float] = {}
    neg_flag: set[str] = set()
    neg_alarm: set[str] = set()
    negatives = truth["negatives"] if truth["negatives"] is not None else seen - set(truth["churn"]) - truth["ignored"]
    with open(alarms_path, "rb") as fh:
        for line in fh:
            a = orjson.loads(line)
            if a["phase"] not in ("warning", "alarm"):
                continue
            m, t = a["msisdn"], float(a["event_time"])
            if m in truth["churn"]:
                first_any[m] = min(first_any.get(m, math.inf), t)
            elif m in negatives:
                neg_flag.add(m)
                if a["phase"] == "alarm":
                    neg_alarm.add(m)
    hits = sum(first_any.get(m, math.inf) <= ts - lead_days * DAY_S for m, ts in truth["churn"].items())
    return {
        "recall": _share(hits, len(truth["churn"])),
        "warned": _share(len(neg_flag), len(negatives)),
        "alarmed": _share(len(neg_alarm), len(negatives)),
    }


# ---------------------------------------------------------------------------- output


def toml_text(values: dict, header: str) -> str:
    """A flat TOML document of scalars, lists and string tables (what an engine config holds)."""
    lines = [f"# {x}" for x in header.splitlines()] + [""]
    tables = []
    for k, v in values.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in tables:
        lines += ["", f"[{k}]"] + [f"{orjson.dumps(str(a)).decode()} = {_toml_value(b)}" for a, b in v.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return orjson.dumps(v).decode()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def write_png(curve: list[dict], chosen: dict, budget: float, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [c for c in curve if c["recall"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot([c["budget"] * 100 for c in pts], [c["recall"] * 100 for c in pts], "o-", label="best recall found")
    ax.axvline(budget * 100, color="tab:red", ls="--", lw=1, label=f"budget {budget:.1%}")
    ax.plot([chosen["warned"] * 100], [chosen["recall"] * 100], "*", ms=14, color="tab:red", label="chosen")
    ax.set_xlabel("non-churners ever warned or alarmed (%)")
    ax.set_ylabel("churners flagged with the lead (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("churnwatch tune: recall within a budget")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# ---------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", required=True, metavar="FILE", help="the labelled history's events (NDJSON)")
    p.add_argument("--truth", required=True, metavar="FILE", help="churners: msisdn,churn_date[,reason] (CSV)")
    p.add_argument("--budget-warned", type=float, default=0.05, metavar="SHARE", help="non-churners ever warned (0.05)")
    p.add_argument("--budget-alarm", type=float, default=1.0, metavar="SHARE", help="... ever in alarm (no limit)")
    p.add_argument("--lead-days", type=float, default=7.0, metavar="DAYS", help="lead before churn that counts (7)")
    p.add_argument("--out", required=True, metavar="FILE", help="the tuned config (TOML)")
    p.add_argument("--config", metavar="FILE", help="the base config (TOML); defaults when absent")
    p.add_argument("--candidates", type=int, default=300, metavar="N", help="random candidates (300)")
    p.add_argument("--seed", type=int, default=1, help="the search's random seed (1)")
    p.add_argument("--ignore-reason", action="append", default=[], metavar="R", help="leave out churners of reason R")
    p.add_argument("--png", metavar="FILE", help="the curve as PNG (default <out>.png; 'none' to skip)")
    p.add_argument("--no-check", action="store_true", help="skip the checking backtest of the tuned config")
    p.add_argument(
        "--no-learn-priors", action="store_true", help="keep the base config's recharge priors (not learned)"
    )
    p.add_argument(
        "--holdout-events", metavar="FILE", help="another labelled history: base and tuned configs measured on it"
    )
    p.add_argument("--holdout-truth", metavar="FILE", help="its truth (with --holdout-events)")


def _base_mapping(path: str | None) -> dict:
    if not path:
        return {}
    import tomllib

    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return dict(data["engine"]) if set(data) == {"engine"} else dict(data)


def backtest_measure(events_path: str, cfg, truth: dict, lead_days: float) -> dict:
    """Backtest ``cfg`` on a history and measure its alarms with the tune's definitions."""
    from stream.engine import Engine
    from stream.tools.backtest import backtest

    eng = Engine(cfg, clock=None)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "a.ndjson")
        backtest(events_path, path, cfg, engine=eng)
        return measure(path, truth, lead_days, set(eng))


def _print_measured(name: str, got: dict) -> None:
    print(f"{name:>10} {got['recall']:>8.1%} {got['warned']:>8.1%} {got['alarmed']:>8.1%}  (backtest)")


def _holdout(args, base_cfg, tuned_cfg) -> None:
    """Both configs backtested on the held-out history, measured with the tune's definitions."""
    truth = load_truth_any(args.holdout_truth, base_cfg, tuple(args.ignore_reason))
    print(f"\nheld out ({args.holdout_events}):")
    for name, c in (("base", base_cfg), ("tuned", tuned_cfg)):
        _print_measured(name, backtest_measure(args.holdout_events, c, truth, args.lead_days))


def run(args: argparse.Namespace) -> int:
    from stream.engine import ConfigError, EngineConfig
    from stream.tools.backtest import backtest

    def fail(msg: str) -> int:
        print(f"churnwatch tune: {msg}", file=sys.stderr)
        return 2

    if not (0 <= args.budget_warned <= 1 and 0 <= args.budget_alarm <= 1) or args.lead_days < 0:
        return fail("budgets must be shares in [0, 1] and --lead-days >= 0")
    try:
        base_map = _base_mapping(args.config)
        cfg = EngineConfig.from_mapping(base_map)
        truth = load_truth_any(args.truth, cfg, tuple(args.ignore_reason))
    except (ConfigError, OSError, ValueError, KeyError) as exc:
        return fail(str(exc))
    if not truth["churn"]:
        return fail(f"{args.truth}: no churners to tune for")
    if bool(args.holdout_events) != bool(args.holdout_truth):
        return fail("--holdout-events and --holdout-truth go together")
    t0 = time.perf_counter()
    cfg0 = cfg  # the base as given (the held-out comparison's "base")
    learned = {} if args.no_learn_priors else learn_recharge_priors(args.events, cfg, set(truth["churn"]))
    learned = {k: v for k, v in learned.items() if k not in base_map}  # the base file's own values win
    if learned:
        print("learned from the prepaid non-churners: " + ", ".join(f"{k} = {v}" for k, v in learned.items()))
        base_map = {**base_map, **learned}
        cfg = EngineConfig.from_mapping(base_map)
    rec = recording_engine(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            backtest(args.events, os.path.join(tmp, "a.ndjson"), cfg, engine=rec)
        except OSError as exc:
            return fail(f"cannot read {args.events}: {exc}")
    t1 = time.perf_counter()
    tuner = Tuner(rec, truth, args.lead_days)
    base = tuner.score({k: float(getattr(cfg, k)) for k in TUNED}, args.budget_warned, args.budget_alarm)
    best = tuner.search(args.budget_warned, args.budget_alarm, n_random=args.candidates, seed=args.seed)
    t2 = time.perf_counter()
    print(
        f"replay: {tuner.n_rows:,} subscriber-day decisions recorded in {t1 - t0:.1f} s; "
        f"{len(tuner.tried)} candidates in {t2 - t1:.1f} s; churners {tuner.n_pos}, non-churners {tuner.n_neg}"
    )
    print(f"\n{'budget warned':>14} {'best recall':>12} {'warned':>8}")
    budgets = sorted({0.01, 0.02, 0.03, 0.05, 0.08, 0.10, 0.15, 0.20, args.budget_warned})
    curve = tuner.curve(budgets)
    for c in curve:
        r = "-" if c["recall"] is None else f"{c['recall']:.1%}"
        w = "-" if c["warned"] is None else f"{c['warned']:.1%}"
        print(f"{c['budget']:>14.1%} {r:>12} {w:>8}")
    tuned = {k: v for k, v in best["params"].items() if v != getattr(cfg, k)}
    out_map = {**base_map, **tuned}
    try:
        EngineConfig.from_mapping(out_map)
    except ConfigError as exc:  # pragma: no cover - the search only keeps valid configs
        return fail(f"the tuned config does not load: {exc}")
    header = (
        f"churnwatch tune --events {args.events} --truth {args.truth} --budget-warned {args.budget_warned} "
        f"--budget-alarm {args.budget_alarm} --lead-days {args.lead_days}\n"
        f"predicted on that history: recall@{args.lead_days:g}d {best['recall']:.3f}, non-churners warned "
        f"{best['warned']:.3f}, in alarm {best['alarmed']:.3f} (base config: {base['recall']:.3f} / "
        f"{base['warned']:.3f} / {base['alarmed']:.3f})"
    )
    Path(args.out).write_text(toml_text(out_map, header))
    print(f"\n{'':>10} {'recall':>8} {'warned':>8} {'alarmed':>8}")
    label = "base+prior" if learned else "base"
    print(f"{label:>10} {base['recall']:>8.1%} {base['warned']:>8.1%} {base['alarmed']:>8.1%}  (replayed)")
    print(f"{'tuned':>10} {best['recall']:>8.1%} {best['warned']:>8.1%} {best['alarmed']:>8.1%}  (replayed)")
    if not best["ok"]:
        print(f"no candidate met the budget: the closest is written to {args.out}", file=sys.stderr)
    if not args.no_check:
        _print_measured("tuned", backtest_measure(args.events, EngineConfig.from_toml(args.out), truth, args.lead_days))
    print(f"\nwrote {args.out}: {', '.join(f'{k}={v}' for k, v in sorted(tuned.items())) or 'the base config'}")
    if args.holdout_events:
        _holdout(args, cfg0, EngineConfig.from_toml(args.out))
    if (args.png or "").lower() != "none":
        try:
            png = write_png(curve, best, args.budget_warned, args.png or f"{args.out}.png")
            print(f"curve: {png}")
        except ImportError:
            print("curve: matplotlib not installed, no PNG", file=sys.stderr)
    return 0 if best["ok"] else 1
