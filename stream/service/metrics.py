"""All service metrics in one object, built on an injected registry (a fresh one per test).

Seconds are the unit of time. No metric is ever labelled by subscriber (MSISDNs are personal
data); labels are low-cardinality codes only: event type, reject reason, phase, signal, tier,
topic/partition.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# No `*_created` series: they double the exposition and no dashboard of ours reads them.
disable_created_metrics()

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

_BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000)
_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# attribute: kind, name (after the prefix), help, labels[, histogram buckets]
_METRICS: dict[str, tuple] = {
    "events": (Counter, "events", "Input events applied, by type", ("type",)),
    "rejects": (Counter, "rejects", "Input messages rejected (sent to the dead-letter topic), by reason", ("reason",)),
    "late": (Counter, "late_events", "Events older than the state ring (rejected)", ()),
    "future": (Counter, "future_events", "Events implausibly far in the future (rejected)", ()),
    "replayed": (
        Counter,
        "replayed_events",
        "Events skipped because their offset was already applied (replay after a crash)",
        (),
    ),
    "alarms": (Counter, "alarms", "Alarm records emitted, by phase and value tier", ("phase", "tier")),
    "alarm_signals": (
        Counter,
        "alarm_signals",
        "Signals carried by emitted alarm records, by phase and signal",
        ("phase", "signal"),
    ),
    "deadletters": (Counter, "deadletters", "Records written to the dead-letter topic", ()),
    "batch_size": (Histogram, "batch_size", "Events per processed batch", (), _BATCH_SIZE_BUCKETS),
    "batch_seconds": (
        Histogram,
        "batch_seconds",
        "Seconds to process one batch (decode, apply, evaluate, state writes, sends)",
        (),
        _SECONDS_BUCKETS,
    ),
    "event_time_lag": (Gauge, "event_time_lag_seconds", "Wall clock minus the newest event time applied", ()),
    "watermark": (Gauge, "watermark_seconds", "Newest event time applied (Unix seconds)", ()),
    "subscribers": (Gauge, "subscribers", "Subscribers held in this worker's state", ()),
    "sweep_seconds": (
        Histogram,
        "sweep_seconds",
        "Seconds per event-time day decision over all subscribers",
        (),
        _SECONDS_BUCKETS,
    ),
    "sweeps": (Counter, "sweeps", "Event-time day decisions run (one or more days each)", ()),
    "decided_day": (
        Gauge,
        "decided_day",
        "The last event-time day decided (days since 1970-01-01 in the engine's zone)",
        (),
    ),
    "decisions_held": (
        Gauge,
        "decisions_held_seconds",
        "Event-time seconds between this worker's complete time and the time it decides up to (held "
        "back until every worker reported its handset switches past it: /healthz peer_time)",
        (),
    ),
    "idle_checks": (
        Counter,
        "idle_checks",
        "Input partitions caught up as of their last fetch whose end offset was asked before they stop holding "
        "the complete time back and are reported idle to the other workers, by result (caught_up; behind: "
        "records on the broker the fetch had not shown; failed: no answer)",
        ("result",),
    ),
    "consumer_lag": (
        Gauge,
        "consumer_lag",
        "Messages behind the high watermark, by input topic and partition",
        ("topic", "partition"),
    ),
    "consumer_position": (
        Gauge,
        "consumer_position",
        "Next input offset to process (everything before it is durable), by input topic and partition",
        ("topic", "partition"),
    ),
    "shadow_messages": (
        Counter,
        "shadow_messages",
        "Internal routing messages sent, by stage (second SIM: contacts, bands, evidence; handset switches, heartbeats)",
        ("stage",),
    ),
    "shadow_confirmed": (
        Counter,
        "shadow_confirmed",
        "Second-SIM candidates confirmed against a subscriber's circle",
        (),
    ),
    "shadow_numbers": (Gauge, "shadow_numbers", "Competitor numbers sketched by this worker (stage 1)", ()),
    "shadow_band_keys": (Gauge, "shadow_band_keys", "LSH band keys held by this worker (stage 2)", ()),
    "shadow_held": (
        Gauge,
        "shadow_held_contacts",
        "Contacts stage 1 of the second-SIM join holds until the day before theirs is published (the barrier)",
        (),
    ),
    "handset_evidence": (
        Counter,
        "handset_evidence",
        "Subscribers given dual-SIM evidence by another worker's handset switch",
        (),
    ),
    "handset_switches": (
        Gauge,
        "handset_switches_kept",
        "Other workers' handset switches kept in this worker's table partitions (expired after dual_sim_days)",
        (),
    ),
    "void_days": (
        Gauge,
        "void_dates",
        "Void days (feed outages: void_fraction) among the 35 complete days the latest day decided read",
        (),
    ),
    "shadow_bad": (Counter, "shadow_bad_messages", "Unreadable second-SIM join messages skipped, by topic", ("topic",)),
    "checkpoints": (
        Counter,
        "checkpoints",
        "Checkpoints completed (state flushed and acknowledged, then input offsets committed)",
        (),
    ),
    "checkpoint_seconds": (
        Histogram,
        "checkpoint_seconds",
        "Seconds from a checkpoint's state flush to its committed offsets",
        (),
        _SECONDS_BUCKETS,
    ),
    "checkpoint_wait": (
        Counter,
        "checkpoint_wait_seconds",
        "Seconds the processing waited for the previous checkpoint to complete (its acknowledgements "
        "and commit) before it could write the next one: time the broker's answers cost the worker",
        (),
    ),
    "checkpoint_states": (
        Counter,
        "checkpoint_states",
        "Subscriber states written to the table at checkpoints (one per changed subscriber per checkpoint)",
        (),
    ),
    "gc_seconds": (
        Counter,
        "gc_seconds",
        "Seconds the worker's process spent in Python's cyclic garbage collector, by generation (pauses: "
        "nothing else runs meanwhile)",
        ("generation",),
    ),
    "store_flush_states": (
        Counter,
        "store_flush_states",
        "Subscriber states written to the table's local store (RocksDB) at its flushes (CHURNWATCH_STORE_FLUSH_S)",
        (),
    ),
    "checkpoint_inflight": (
        Gauge,
        "checkpoint_inflight",
        "1 while a checkpoint's state is acknowledged but its input offsets are not committed yet",
        (),
    ),
    "paused_partitions": (
        Gauge,
        "paused_partitions",
        "Input partitions paused by event-time alignment (ahead of the slowest partition with a backlog)",
        (),
    ),
    "stalled_partitions": (
        Gauge,
        "stalled_partitions",
        "Input partitions with a backlog and no progress for CHURNWATCH_STALL_S",
        (),
    ),
    "input_gaps": (
        Counter,
        "input_offset_gaps",
        "Input fetches that did not start at the next offset expected (skipped offsets: transaction markers, retention; otherwise a bug)",
        ("topic",),
    ),
    "fenced": (
        Counter,
        "fenced",
        "Times this worker stopped writing state: its partitions revoked, out of the group, or a recovery that did not cover the committed offsets",
        ("reason",),
    ),
    "broker_reachable": (
        Gauge,
        "broker_reachable",
        "1 while the broker answered within the last 20 s (fetches, commits, or a metadata probe when idle)",
        (),
    ),
    "restored": (
        Counter,
        "restored_subscribers",
        "Subscriber states loaded from the changelog-backed table after a rebalance",
        (),
    ),
}


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, prefix: str = "churnwatch") -> None:
        """One attribute per entry of ``_METRICS`` (``self.events``, ``self.rejects``, ...)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        for attr, (kind, name, help_, labels, *buckets) in _METRICS.items():
            extra = {"buckets": buckets[0]} if buckets else {}
            setattr(self, attr, kind(f"{prefix}_{name}", help_, labels, registry=self.registry, **extra))
        self.broker_reachable.set(1)

    def observe_alarms(self, alarms) -> None:
        for a in alarms:
            phase = a["phase"]
            self.alarms.labels(phase=phase, tier=a["value_tier"]).inc()
            for s in a["signals"]:
                self.alarm_signals.labels(phase=phase, signal=s["name"]).inc()

    def time_gc(self):
        """Count the cyclic GC's pauses of this process in ``gc_seconds`` from now on (the worker
        process calls it once: ``gc.callbacks`` are per process). Returns the callback installed."""
        import gc
        import time

        started = [0.0]
        counters = {g: self.gc_seconds.labels(generation=str(g)) for g in (0, 1, 2)}

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            elif started[0]:
                counters[info.get("generation", 2)].inc(time.perf_counter() - started[0])
                started[0] = 0.0

        gc.callbacks.append(on_gc)
        return on_gc

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
