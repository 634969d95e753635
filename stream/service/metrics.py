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


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, prefix: str = "churnwatch") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, p = self.registry, prefix
        self.events = Counter(f"{p}_events", "Input events applied, by type", ["type"], registry=r)
        self.rejects = Counter(
            f"{p}_rejects", "Input messages rejected (sent to the dead-letter topic), by reason", ["reason"], registry=r
        )
        self.late = Counter(f"{p}_late_events", "Events older than the state ring (rejected)", registry=r)
        self.future = Counter(f"{p}_future_events", "Events implausibly far in the future (rejected)", registry=r)
        self.replayed = Counter(
            f"{p}_replayed_events",
            "Events skipped because their offset was already applied (replay after a crash)",
            registry=r,
        )
        self.alarms = Counter(
            f"{p}_alarms", "Alarm records emitted, by phase and value tier", ["phase", "tier"], registry=r
        )
        self.alarm_signals = Counter(
            f"{p}_alarm_signals",
            "Signals carried by emitted alarm records, by phase and signal",
            ["phase", "signal"],
            registry=r,
        )
        self.deadletters = Counter(f"{p}_deadletters", "Records written to the dead-letter topic", registry=r)
        self.batch_size = Histogram(
            f"{p}_batch_size", "Events per processed batch", buckets=_BATCH_SIZE_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            f"{p}_batch_seconds",
            "Seconds to process one batch (decode, apply, evaluate, state writes, sends)",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.event_time_lag = Gauge(
            f"{p}_event_time_lag_seconds", "Wall clock minus the newest event time applied", registry=r
        )
        self.watermark = Gauge(f"{p}_watermark_seconds", "Newest event time applied (Unix seconds)", registry=r)
        self.subscribers = Gauge(f"{p}_subscribers", "Subscribers held in this worker's state", registry=r)
        self.sweep_seconds = Histogram(
            f"{p}_sweep_seconds",
            "Seconds per event-time day decision over all subscribers",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.sweeps = Counter(f"{p}_sweeps", "Event-time day decisions run (one or more days each)", registry=r)
        self.decided_day = Gauge(
            f"{p}_decided_day",
            "The last event-time day decided (days since 1970-01-01 in the engine's zone)",
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{p}_consumer_lag",
            "Messages behind the high watermark, by input topic and partition",
            ["topic", "partition"],
            registry=r,
        )
        self.consumer_position = Gauge(
            f"{p}_consumer_position",
            "Next input offset to process (everything before it is durable), by input topic and partition",
            ["topic", "partition"],
            registry=r,
        )
        self.shadow_messages = Counter(
            f"{p}_shadow_messages",
            "Second-SIM join messages sent, by stage (contacts, bands, evidence)",
            ["stage"],
            registry=r,
        )
        self.shadow_confirmed = Counter(
            f"{p}_shadow_confirmed", "Second-SIM candidates confirmed against a subscriber's circle", registry=r
        )
        self.shadow_numbers = Gauge(
            f"{p}_shadow_numbers", "Competitor numbers sketched by this worker (stage 1)", registry=r
        )
        self.shadow_band_keys = Gauge(
            f"{p}_shadow_band_keys", "LSH band keys held by this worker (stage 2)", registry=r
        )
        self.shadow_bad = Counter(
            f"{p}_shadow_bad_messages", "Unreadable second-SIM join messages skipped, by topic", ["topic"], registry=r
        )
        self.checkpoints = Counter(
            f"{p}_checkpoints",
            "Checkpoints completed (state flushed and acknowledged, then input offsets committed)",
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            f"{p}_checkpoint_seconds",
            "Seconds from a checkpoint's state flush to its committed offsets",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.checkpoint_states = Counter(
            f"{p}_checkpoint_states",
            "Subscriber states written to the table at checkpoints (one per changed subscriber per checkpoint)",
            registry=r,
        )
        self.checkpoint_inflight = Gauge(
            f"{p}_checkpoint_inflight",
            "1 while a checkpoint's state is acknowledged but its input offsets are not committed yet",
            registry=r,
        )
        self.paused_partitions = Gauge(
            f"{p}_paused_partitions",
            "Input partitions paused by event-time alignment (ahead of the slowest partition with a backlog)",
            registry=r,
        )
        self.stalled_partitions = Gauge(
            f"{p}_stalled_partitions",
            "Input partitions with a backlog and no progress for CHURNWATCH_STALL_S",
            registry=r,
        )
        self.input_gaps = Counter(
            f"{p}_input_offset_gaps",
            "Input fetches that did not start at the next offset expected (skipped offsets: transaction markers, retention; otherwise a bug)",
            ["topic"],
            registry=r,
        )
        self.fenced = Counter(
            f"{p}_fenced",
            "Times this worker stopped writing state because its partitions were revoked or it fell out of the group",
            ["reason"],
            registry=r,
        )
        self.broker_reachable = Gauge(
            f"{p}_broker_reachable",
            "1 while the broker answered within the last 20 s (fetches, commits, or a metadata probe when idle)",
            registry=r,
        )
        self.broker_reachable.set(1)
        self.restored = Counter(
            f"{p}_restored_subscribers",
            "Subscriber states loaded from the changelog-backed table after a rebalance",
            registry=r,
        )

    def observe_alarms(self, alarms) -> None:
        for a in alarms:
            phase = a["phase"]
            self.alarms.labels(phase=phase, tier=a["value_tier"]).inc()
            for s in a["signals"]:
                self.alarm_signals.labels(phase=phase, signal=s["name"]).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
