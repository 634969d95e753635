"""Drive an engine over a list of events like the backtest does (arrival order, the batch step)."""

from __future__ import annotations

import orjson

from stream.engine import Engine, EngineConfig, ReferenceEngine

ENGINES = (Engine, ReferenceEngine)
CLOCK = 4_000_000_000.0  # a fixed wall clock far after the test data


def quiet_config(**kw) -> EngineConfig:
    """Defaults without holidays (so test dates never fall into a season), overridable."""
    kw.setdefault("holidays", ())
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
