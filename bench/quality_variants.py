"""``python -m bench.quality_variants --pop SIM.ndjson:TRUTH.csv [--pop ...] --variant K=V[,K=V] [...]``

Decision rules and thresholds compared on simulated populations without a backtest per variant:
each population is replayed once through the engine with every day decision's features recorded
(``churnwatch tune``'s recorder), then each variant re-runs only the decision on the recorded
features (``Engine.decide_recorded``). Printed per population and variant: recall with >= 7 days'
lead over switchers, drifters and prepaid lapsers (a warning or alarm decision at least 7 days
before the churn day, or a care-line dial's immediate alarm), lapsers alone, and the loyal
subscribers ever warned and ever in the alarm phase (the simulator's truth: ``archetype``).

Only keys the decision reads take effect (thresholds, weights, ``lapse_decline_*``); keys that
shape the features (windows, circle rules, priors) need a real backtest: ``--base K=V[,K=V]``
replays the populations with them (run once per base to compare). The replay keeps the
recorded run's choice of which subscribers a day decides and ignores recoveries and cooldowns:
its recall and warned shares match `churnwatch report` on a backtest within ~1 point (2026-12-07:
exactly, on the seven populations of README "Alarm quality", for the defaults of that day)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import tempfile

import numpy as np

__all__ = ["record", "score"]

EARLY = ("switcher", "drifter", "prepaid_lapser")


def record(events: str, truth_path: str, cfg):
    """The tuner of one population (its features recorded once) and each of its ids' archetype."""
    from stream.tools.backtest import backtest
    from stream.tools.tune import Tuner, load_truth_any, recording_engine

    truth = load_truth_any(truth_path, cfg)
    rec = recording_engine(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        backtest(events, os.path.join(tmp, "a.ndjson"), cfg, engine=rec)
    tuner = Tuner(rec, truth, 7.0)
    with open(truth_path, newline="") as fh:
        arch = {row["msisdn"]: row["archetype"] for row in csv.DictReader(fh)}
    # the tuner's ids: every msisdn decided, dialled or churned, sorted
    names = sorted(set(rec.rec_ms) | {m for m, _ in rec.rec_imm} | set(truth["churn"]))
    return tuner, np.array([arch.get(m, "?") for m in names])


def score(tuner, arch: np.ndarray, cfg) -> dict:
    from stream.engine import Engine

    raw = Engine.decide_recorded(cfg, tuner.f, tuner.ctx)["raw"]
    n, sub = tuner.n_ids, tuner.sub
    hit = (np.bincount(sub[(raw >= 1) & tuner.early], minlength=n) > 0) | tuner.imm_hit
    warned = (np.bincount(sub[raw >= 1], minlength=n) > 0) | tuner.imm_any
    alarmed = (np.bincount(sub[raw >= 2], minlength=n) > 0) | tuner.imm_any
    early, loyal, lapser = np.isin(arch, EARLY), arch == "loyal", arch == "prepaid_lapser"
    return {
        "recall_7d": float(hit[early].mean()),
        "lapsers_7d": float(hit[lapser].mean()) if lapser.any() else None,
        "loyal_warned": float(warned[loyal].mean()),
        "loyal_alarm": float(alarmed[loyal].mean()),
    }


def _variant(text: str) -> dict:
    out = {}
    for part in filter(None, text.split(",")):
        k, _, v = part.partition("=")
        v = v.strip()
        if v.lower() in ("true", "false"):
            out[k.strip()] = v.lower() == "true"
        else:
            try:
                out[k.strip()] = int(v)
            except ValueError:
                out[k.strip()] = float(v)
    return out


def main(argv=None) -> None:
    from stream.engine import EngineConfig

    p = argparse.ArgumentParser(prog="python -m bench.quality_variants", description=__doc__.split("\n\n")[1])
    p.add_argument("--pop", action="append", required=True, help="EVENTS.ndjson:TRUTH.csv (repeatable)")
    p.add_argument("--variant", action="append", default=[], help="K=V[,K=V] over the defaults (repeatable)")
    p.add_argument(
        "--base",
        default="",
        metavar="K=V[,K=V]",
        help="the config each population is replayed with (keys that shape the features), over the defaults",
    )
    args = p.parse_args(argv)
    base = dataclasses.replace(EngineConfig(), **_variant(args.base))
    variants = [{}] + [_variant(v) for v in args.variant]
    means = [[] for _ in variants]
    for pop in args.pop:
        events, _, truth = pop.rpartition(":")
        tuner, arch = record(events, truth, base)
        for i, v in enumerate(variants):
            r = score(tuner, arch, dataclasses.replace(base, **v))
            means[i].append(r)
            lap = "-" if r["lapsers_7d"] is None else f"{r['lapsers_7d']:.1%}"
            print(
                f"{os.path.basename(events):<24} {str(v or 'defaults'):<60} recall@7d {r['recall_7d']:.1%}  "
                f"lapsers {lap:>6}  loyal warned {r['loyal_warned']:.1%}  in alarm {r['loyal_alarm']:.1%}",
                flush=True,
            )
    for v, rs in zip(variants, means, strict=True):
        m = {k: float(np.mean([r[k] for r in rs])) for k in ("recall_7d", "loyal_warned", "loyal_alarm")}
        print(
            f"{'mean':<24} {str(v or 'defaults'):<60} recall@7d {m['recall_7d']:.1%}  "
            f"loyal warned {m['loyal_warned']:.1%}  in alarm {m['loyal_alarm']:.1%}"
        )


if __name__ == "__main__":
    main()
