"""The churn engine: pure Python + numpy, no Kafka/Faust.

``Engine`` (vectorised, columnar numpy state) and ``ReferenceEngine`` (plain Python, one event at a
time) share the same API and semantics:

* ``decode(raws, keys=None, src=None, offsets=None) -> (Batch, [Reject])``
* ``apply(batch) -> touched rows``; ``last_rejects`` (late/future), ``last_skipped``, ``counters``
* ``evaluate(touched) -> [alarm dict]`` at the watermark; ``sweep(now_s) -> [alarm dict]``
* ``snapshot(msisdn) -> bytes | None``; ``restore(msisdn, data)``; ``forget(msisdns)``; ``view(msisdn)``
"""

from .config import ConfigError, EngineConfig
from .core import Engine
from .decode import REJECT_REASONS, Batch, Reject
from .reference import ReferenceEngine

__all__ = ["Engine", "EngineConfig", "ConfigError", "Batch", "Reject", "ReferenceEngine", "REJECT_REASONS"]
