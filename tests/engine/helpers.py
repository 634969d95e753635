"""Drive an engine over a list of events like the backtest does (arrival order, the batch step)."""

from __future__ import annotations

import orjson

from stream.engine import Engine, EngineConfig, ReferenceEngine

ENGINES = (Engine, ReferenceEngine)
CLOCK = 4_000_000_000.0  # a fixed wall clock far after the test data


# the score thresholds and weights the hand-computed expectations of the unit tests were written
# for (the defaults before the 2026-12-02 retune on four tuning populations, README "Alarm quality"):
# the tests check the mechanics, the defaults are measured by backtests
UNIT_THRESHOLDS = {
    "warn_score": 0.35,
    "alarm_score": 0.65,
    "drop_threshold": 0.5,
    "trend_threshold": 0.5,
    "erosion_threshold": 0.6,
    "w_drop": 0.64,
    "w_erosion": 0.5,
    "w_recharge_lapse": 0.35,
    "w_silence": 0.4,
}


def quiet_config(**kw) -> EngineConfig:
    """Defaults without holidays (so test dates never fall into a season) and with the unit tests'
    thresholds (``UNIT_THRESHOLDS``), overridable."""
    kw.setdefault("holidays", ())
    for k, v in UNIT_THRESHOLDS.items():
        kw.setdefault(k, v)
    return EngineConfig(**kw)


def drive(eng, events, batch: int = 100, sort: bool = True, final_sweep_s: float | None = None):
    """Feed events (dicts or bytes) in batches through the batch step, as the backtest does (each
    batch cut where the watermark completes a day); optionally decide the day of
    ``final_sweep_s`` at the end. Returns all alarms in order."""
    from stream.engine.step import Replay

    if sort:
        events = sorted(events, key=lambda e: e["ts"])
    raws = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    alarms = []
    replay = Replay(eng)
    for i in range(0, len(raws), batch):
        b, _ = eng.decode(raws[i : i + batch])
        for res in replay.feed(b):
            alarms += res.alarms
    if final_sweep_s is not None:
        alarms += eng.sweep(final_sweep_s)
    return alarms


def sweep_days(eng, day_from: int, day_to: int):
    """Sweeps at the start of each day in [day_from, day_to]."""
    out = []
    for d in range(day_from, day_to + 1):
        out += eng.sweep(eng.config.day_start_s(d))
    return out


def phases(alarms, msisdn=None):
    return [a["phase"] for a in alarms if msisdn is None or a["msisdn"] == msisdn]


def signal_names(alarm):
    return [s["name"] for s in alarm["signals"]]
