"""``python -m bench.shadow_quality --events SIM.ndjson --truth TRUTH.csv --alarms-out ALARMS.ndjson``

Backtest with the default engine config while recording, per subscriber, the first evaluation at
which the second-SIM join's ``shadow`` evidence trips (alarm records only show it when the phase
rises). Prints JSON: per archetype how many got a shadow; for switchers, how many got *their own*
second SIM (the simulator's ``second_sim``), how many days before the churn day; loyal false pairs.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import statistics

__all__ = ["measure"]


def measure(events: str, truth_path: str, alarms_out: str, config=None) -> dict:
    from stream.engine import Engine, EngineConfig
    from stream.tools import backtest as bt

    first: dict[str, tuple[int, int]] = {}
    orig = Engine._shadow_features

    def recording(self, rows, D):
        f = orig(self, rows, D)
        for r in rows[f["shadow"]].tolist():
            m = self._msisdn[r]
            if m not in first:
                first[m] = (D, int(self._a["sh_peer"][r]))
        return f

    Engine._shadow_features = recording
    try:
        cfg = config or EngineConfig()
        summary = bt.backtest(events, alarms_out, cfg)
    finally:
        Engine._shadow_features = orig
    truth = {r["msisdn"]: r for r in csv.DictReader(open(truth_path))}
    n = collections.Counter(t["archetype"] for t in truth.values())
    got = collections.Counter()
    leads = []
    for m, (D, x) in first.items():
        t = truth[m]
        got[t["archetype"]] += 1
        if t["second_sim"] and int(t["second_sim"][-11:]) == x and t["churn_ts"]:
            leads.append(cfg.day_of(float(t["churn_ts"])) - D)
    sw = n["switcher"]
    return {
        "shadow_by_archetype": dict(got),
        "n": dict(n),
        "switchers": sw,
        "switchers_own_second_sim": len(leads),
        "recall_own_second_sim": round(len(leads) / sw, 4) if sw else None,
        "found_ge7d_before_churn": sum(v >= 7 for v in leads),
        "found_ge14d_before_churn": sum(v >= 14 for v in leads),
        "median_days_before_churn": statistics.median(leads) if leads else None,
        "loyal_false_pairs": got["loyal"],
        "loyal_false_pair_rate": round(got["loyal"] / n["loyal"], 5) if n["loyal"] else None,
        "candidates": summary["shadow_evidence"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shadow_quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--alarms-out", required=True)
    p.add_argument("--config", help="engine thresholds (TOML); defaults when absent")
    a = p.parse_args(argv)
    from stream.engine import EngineConfig

    cfg = EngineConfig.from_toml(a.config) if a.config else None
    print(json.dumps(measure(a.events, a.truth, a.alarms_out, cfg)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
