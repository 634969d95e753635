"""The churn engine: pure Python + numpy, no Kafka/Faust.

``Engine`` (vectorised, columnar numpy state, :mod:`stream.engine.core`) and ``ReferenceEngine``
(plain Python, one event at a time, :mod:`stream.engine.reference`) share the API and the semantics;
property tests (``tests/engine/test_equivalence.py``) check that they agree on state and alarms.

API (both engines)::

    eng = Engine(config: EngineConfig | None = None, clock=time.time)   # clock=None: event time only (backtest)
    batch, rejects = eng.decode(raws, keys=None, src=None, offsets=None)   # rejects: [Reject(index, reason, detail)]
    ap = eng.apply(batch)               # Applied(rows, rejects (late/future), skipped, contacts, immediate)
    alarms = eng.immediate(ap.immediate)   # care-line dials: alarm at once
    dec = eng.decide(day)               # Decision(alarms, rows changed): the day's decisions (stream.engine.step)
    alarms = eng.evaluate(rows, now_s)  # (lower level) the given rows at event time now_s
    alarms = eng.sweep(now_s)           # = eng.decide(day of now_s).alarms
    eng.snapshot(msisdn) -> bytes | None; eng.restore(msisdn, data); eng.forget(msisdns)
    eng.view(msisdn) -> dict | None; eng.msisdns(rows); eng.row_of(msisdn); len(eng); msisdn in eng
    eng.watermark_s; eng.day_of(ts); eng.state_bytes_per_subscriber

Semantics worth knowing:

* Days are calendar days in ``config.timezone`` with the zone's UTC offset fixed at config time.
* Windows: "recent" = the 7 complete days before the decision day, "baseline" = the 28 days before
  those, hotline = the 7 complete days before it; the decision day itself is never read (its
  events may still be arriving): silence and recharge lapse are taken as of its start too.
* ``decide(D)`` evaluates everyone active on D-1, silent, lapsing, with live dual-SIM or
  second-SIM evidence, with an immediate alarm to take over, or not healthy (so a churned subscriber
  can escalate or recover without events); :mod:`stream.engine.step` runs it once event time is
  complete for the day (the service and the backtest both run that step).
* Rejects: decode reasons ``invalid_json, not_object, unknown_type, missing_field, invalid_field,
  key_mismatch``; apply reasons ``late`` (a call, SMS or recharge older than the subscriber's own ring: its
  day is ``ring_days`` or more before the newest day in that subscriber's ring) and ``future``
  (``ts > clock() + max_future_s`` or, without a clock, ``ts > watermark + max_future_s``, judged event
  by event as the watermark moves; ``GAP_CONFIRM`` such events in a row, close together, are a gap in
  the feed: the last of them is taken, :func:`stream.engine.core.accept_gaps`). Default offsets of ``decode`` are a running sequence per engine instance.
* Idempotence: per subscriber and source the highest offset seen; an event at or below it is skipped
  (``Applied.skipped``). Offsets of rejected (late/future) events count too.
* ``apply`` returns (``Applied.rows``) the rows of subscribers with applied events plus those whose
  dual-SIM evidence changed because another number used their handset (their state changed: write
  them back too).
* Lifecycle: healthy -> warning -> alarm -> churned only upwards; one record when a phase is entered
  (unless the same or a higher phase was emitted within ``cooldown_days``); ``recovered`` when the
  signals have stayed clear for ``recover_clear_days`` (7) consecutive days and the subscriber is
  active again (>= 3 active recent days), which starts a new episode (snapshot version 2 keeps the
  first clear day). ``alarm_id = contract.alarm_id(msisdn, phase, evaluation day, episode)``.
* The IMEI index (handset -> up to 4 numbers) lives in the engine instance: in the service a worker
  sees only the numbers of its own partitions until a later issue routes by handset.
"""

from .config import ConfigError, EngineConfig
from .core import Applied, Decision, Engine
from .decode import REJECT_REASONS, Batch, Reject
from .reference import ReferenceEngine

__all__ = [
    "Engine",
    "Applied",
    "Decision",
    "EngineConfig",
    "ConfigError",
    "Batch",
    "Reject",
    "ReferenceEngine",
    "REJECT_REASONS",
]
