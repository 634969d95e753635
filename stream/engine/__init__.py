"""The churn engine: pure Python + numpy, no Kafka/Faust.

``Engine`` (vectorised, columnar numpy state, :mod:`stream.engine.core`) and ``ReferenceEngine``
(plain Python, one event at a time, :mod:`stream.engine.reference`) share the API and the semantics;
property tests (``tests/engine/test_equivalence.py``) check that they agree on state and alarms.

API (both engines)::

    eng = Engine(config: EngineConfig | None = None, clock=time.time)
    batch, rejects = eng.decode(raws, keys=None, src=None, offsets=None)   # rejects: [Reject(index, reason, detail)]
    touched = eng.apply(batch)          # int64 rows; eng.last_rejects (late/future), eng.last_skipped, eng.counters
    alarms = eng.evaluate(touched)      # at event time = the watermark
    alarms = eng.sweep(now_s)           # all subscribers at event time now_s (call at each day rollover)
    eng.snapshot(msisdn) -> bytes | None; eng.restore(msisdn, data); eng.forget(msisdns)
    eng.view(msisdn) -> dict | None; eng.msisdns(rows); eng.row_of(msisdn); len(eng); msisdn in eng
    eng.watermark_s; eng.day_of(ts); eng.state_bytes_per_subscriber

Semantics worth knowing:

* Days are calendar days in ``config.timezone`` with the zone's UTC offset fixed at config time.
* Windows: "recent" = the 7 complete days before the evaluation day, "baseline" = the 28 days before
  those; the evaluation day itself counts only for competitor-hotline dials (last 7 days incl. today).
* ``evaluate`` judges at the watermark of the batch; ``sweep(now)`` runs the absence signals (silence,
  recharge lapse) for every subscriber in one vectorised pass, then fully evaluates those that trip one
  and those not healthy (so a churned subscriber can escalate or recover without events).
* Rejects: decode reasons ``invalid_json, not_object, unknown_type, missing_field, invalid_field,
  key_mismatch``; apply reasons ``late`` (a call, SMS or recharge older than the subscriber's own ring: its
  day is ``ring_days`` or more before the newest day in that subscriber's ring) and ``future``
  (``ts > clock() + max_future_s`` or ``ts > watermark + max_future_s``, judged event by event as the
  watermark moves). Default offsets of ``decode`` are a running sequence per engine instance.
* Idempotence: per subscriber and source the highest offset seen; an event at or below it is skipped
  (``last_skipped``). Offsets of rejected (late/future) events count too.
* ``apply`` returns the rows of subscribers with applied events plus those whose dual-SIM evidence
  changed because another number used their handset (their state changed: write them back too).
* Lifecycle: healthy -> warning -> alarm -> churned only upwards; one record when a phase is entered
  (unless the same or a higher phase was emitted within ``cooldown_days``); ``recovered`` when the
  signals have stayed clear for ``recover_clear_days`` (7) consecutive days and the subscriber is
  active again (>= 3 active recent days), which starts a new episode (snapshot version 2 keeps the
  first clear day). ``alarm_id = contract.alarm_id(msisdn, phase, evaluation day, episode)``.
* The IMEI index (handset -> up to 4 numbers) lives in the engine instance: in the service a worker
  sees only the numbers of its own partitions until a later issue routes by handset.
"""

from .config import ConfigError, EngineConfig
from .core import Engine
from .decode import REJECT_REASONS, Batch, Reject
from .reference import ReferenceEngine

__all__ = ["Engine", "EngineConfig", "ConfigError", "Batch", "Reject", "ReferenceEngine", "REJECT_REASONS"]
