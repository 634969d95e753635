"""Every service setting in one typed place: environment names, defaults, validation.

| env | default | meaning |
|---|---|---|
| KAFKA_BOOTSTRAP_SERVERS | 127.0.0.1:19092 | the broker (the local dev broker's port by default) |
| KAFKA_SECURITY_PROTOCOL | PLAINTEXT | PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL |
| KAFKA_SASL_MECHANISM | PLAIN | PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*) |
| KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD | (none) | SASL credentials |
| KAFKA_SSL_CAFILE / KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE | (none) | TLS material (with SSL / SASL_SSL) |
| CHURNWATCH_APP_ID | churnwatch | Faust app id = consumer group = changelog topic prefix |
| CHURNWATCH_TOPIC_CALLS | cdr.calls | input: call events |
| CHURNWATCH_TOPIC_SMS | cdr.sms | input: SMS events |
| CHURNWATCH_TOPIC_RECHARGES | cdr.recharges | input: recharge events |
| CHURNWATCH_TOPIC_PROFILES | subscriber.profiles | input: profile events |
| CHURNWATCH_TOPIC_ALARMS | churn.alarms | output: alarm records |
| CHURNWATCH_TOPIC_DEADLETTER | churn.deadletter | output: rejected input with reasons |
| CHURNWATCH_TOPIC_SHADOW_CONTACTS | <app id>.shadow.contacts | internal: contacts with competitor numbers, keyed by the number |
| CHURNWATCH_TOPIC_SHADOW_BANDS | <app id>.shadow.bands | internal: LSH band publications, keyed by band |
| CHURNWATCH_TOPIC_SHADOW_EVIDENCE | <app id>.shadow.evidence | internal: second-SIM candidates, keyed by subscriber (co-partitioned with the inputs) |
| CHURNWATCH_PARTITIONS | 12 | partitions of the (co-partitioned) input topics and the state table |
| CHURNWATCH_STORE | rocksdb:// | Faust table store (`memory://` for tests) |
| CHURNWATCH_DATA_DIR | var/worker | Faust data dir (RocksDB files) |
| CHURNWATCH_WEB_HOST | 127.0.0.1 | web server bind address (`/metrics`, `/subscribers/{msisdn}`) |
| CHURNWATCH_WEB_PORT | 6066 | web server port |
| CHURNWATCH_WEB_URL | http://<web host>:<web port> | the URL other workers use to reach this one (set it when binding 0.0.0.0, e.g. in containers) |
| CHURNWATCH_CONFIG | (none) | TOML file with engine thresholds (see stream/engine/config.py) |
| CHURNWATCH_BATCH_SIZE | 10000 | max input records per fetch (one batch through the engine); also the second-SIM agents' `take_events` batch |
| CHURNWATCH_FETCH_MAX_WAIT_MS | 100 | the broker holds a fetch that finds no new data this long at most (Faust's own 1,500 made a worker that fell behind receive its input in bursts up to 1.5 s apart: see stream/service/faust_adapter.py) |
| CHURNWATCH_PREFETCH | 0 | 1: the next fetch is under way while a batch is handled (no throughput gain measured beyond the noise: README, "How it works"); 0: fetch after each batch |
| CHURNWATCH_BATCH_TIMEOUT_S | 0.1 | max seconds the second-SIM join's agents wait filling a batch (each of its two hops adds up to this per day decided while catching up) |
| CHURNWATCH_COMMIT_INTERVAL_S | 1.0 | seconds between checkpoints: dirty state flushed, then offsets committed (a crash replays at most this much; replays are skipped per subscriber) |
| CHURNWATCH_COMMIT_EVERY | 10000 | also checkpoint after this many processed messages while catching up (at most 2,000 when live) |
| CHURNWATCH_MAX_SKEW_S | 36000 | event-time alignment: an input partition more than this far ahead of the slowest partition that still has a backlog is paused until the others catch up (with the engine's decision_grace_s, < 1 day with the default ring: see stream/engine/step.py) |
| CHURNWATCH_CHECKPOINT_HOLD_S | 0 | fault injection for tests: hold every checkpoint this long between its acknowledged state and its offset commit (so a SIGKILL lands mid-checkpoint); leave 0 in production |
| CHURNWATCH_RECOVERY_HOLD_S | 0 | fault injection for tests: hold every recovery this long before the engine is rebuilt; leave 0 in production |
| CHURNWATCH_INSTANCE_ID | (none) | Kafka static group membership (`group.instance.id`), unique per worker: a worker restarted with the same id takes its partitions back at once instead of after the session timeout; a worker stopped for good keeps its partitions unassigned until the session timeout |
| CHURNWATCH_SESSION_TIMEOUT_S | 60 | consumer-group session timeout: a worker silent this long loses its partitions; back, it writes nothing before it rejoined |
| CHURNWATCH_STALL_S | 120 | `/healthz` reports a partition with a backlog and no progress for this many seconds (HTTP 503) |
| CHURNWATCH_BROKER_DOWN_S | 20 | `/healthz` reports `broker_unreachable` (HTTP 503) when no broker answered for this many seconds |
| CHURNWATCH_SHUTDOWN_GRACE_S | 25 | on SIGTERM/SIGINT, exit hard if the graceful shutdown has not ended after this many seconds (keep it below the orchestrator's stop grace period; nothing is lost: what was not committed is replayed) |
| CHURNWATCH_GC_GEN0 | 20000 | the worker process's cyclic-GC generation-0 threshold (Python's default: 700; generations 1 and 2 keep 10 and 10): with 700 a batch's records outlive two young collections, are promoted to the old generation and bring full collections that walk the whole heap, ~13% of the worker's CPU while catching up (`churnwatch_gc_seconds_total`) |
| CHURNWATCH_LOG_LEVEL | info | worker log level |

Any other ``CHURNWATCH_*`` variable is a misconfiguration and fails start-up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from .contract import DEFAULT_TOPICS, SHADOW_TOPIC_SUFFIXES

__all__ = ["Settings", "SettingsError", "ENV_VARS"]


GC_GEN0 = 20_000  # the worker's young-generation GC threshold (CHURNWATCH_GC_GEN0); backtests use it too


class SettingsError(ValueError):
    """A setting is unknown, malformed or out of range. The message says which and why."""


# the service's changelog-backed tables (their changelog topics: ``<app id>-<table>-changelog``)
STATE_TABLE = "subscriber-state"
PEERS_TABLE = "shadow-peers"  # the second-SIM join, stage 1
BANDS_TABLE = "shadow-bands"  # ... stage 2
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


# identity settings: an empty value is a mistake, never "the default" (it would join another group or topic)
_NAMES = {
    "CHURNWATCH_APP_ID",
    "CHURNWATCH_TOPIC_CALLS",
    "CHURNWATCH_TOPIC_SMS",
    "CHURNWATCH_TOPIC_RECHARGES",
    "CHURNWATCH_TOPIC_PROFILES",
    "CHURNWATCH_TOPIC_ALARMS",
    "CHURNWATCH_TOPIC_DEADLETTER",
}
_APP_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")
_LOG_LEVELS = {"debug", "info", "warn", "warning", "error", "critical"}
_HOST = re.compile(r"[A-Za-z0-9.:_-]{1,253}|\[[0-9A-Fa-f:.]+\]")  # a name, IPv4 or IPv6 (bare or bracketed)


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    app_id: str = "churnwatch"
    topic_calls: str = DEFAULT_TOPICS["calls"]
    topic_sms: str = DEFAULT_TOPICS["sms"]
    topic_recharges: str = DEFAULT_TOPICS["recharges"]
    topic_profiles: str = DEFAULT_TOPICS["profiles"]
    topic_alarms: str = DEFAULT_TOPICS["alarms"]
    topic_deadletter: str = DEFAULT_TOPICS["deadletter"]
    topic_shadow_contacts: str = ""  # "" = <app id>.shadow.contacts (internal topics are per app, like changelogs)
    topic_shadow_bands: str = ""
    topic_shadow_evidence: str = ""
    partitions: int = 12
    store: str = "rocksdb://"
    data_dir: str = "var/worker"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_url: str | None = None
    config_path: str | None = None
    instance_id: str | None = None
    batch_size: int = 10_000
    batch_timeout_s: float = 0.1
    fetch_max_wait_ms: int = 100
    prefetch: int = 0
    commit_interval_s: float = 1.0
    commit_every: int = 10_000
    store_flush_s: float = 10.0
    max_skew_s: float = 36000.0
    stall_s: float = 120.0
    broker_down_s: float = 20.0
    shutdown_grace_s: float = 25.0
    checkpoint_hold_s: float = 0.0
    recovery_hold_s: float = 0.0
    session_timeout_s: float = 60.0
    gc_gen0: int = GC_GEN0
    log_level: str = "info"

    def __post_init__(self) -> None:
        for kind, suffix in SHADOW_TOPIC_SUFFIXES.items():
            if not getattr(self, f"topic_shadow_{kind}"):
                object.__setattr__(self, f"topic_shadow_{kind}", self.app_id + suffix)
        if not self.bootstrap_servers.strip():
            raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is empty")
        for hp in self.bootstrap_servers.split(","):
            host, _, port = hp.strip().rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError(f"KAFKA_BOOTSTRAP_SERVERS: {hp!r} is not host:port")
        if self.security_protocol not in _SECURITY_PROTOCOLS:
            raise SettingsError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol!r}: expected one of {_SECURITY_PROTOCOLS}"
            )
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism not in _SASL_MECHANISMS:
                raise SettingsError(f"KAFKA_SASL_MECHANISM={self.sasl_mechanism!r}: expected one of {_SASL_MECHANISMS}")
            if not self.sasl_username or self.sasl_password is None:
                raise SettingsError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with SASL")
        if not 1 <= self.partitions <= 10_000:
            raise SettingsError(f"CHURNWATCH_PARTITIONS={self.partitions}: must be 1..10000")
        if not (self.store.startswith("rocksdb://") or self.store.startswith("memory://")):
            raise SettingsError(f"CHURNWATCH_STORE={self.store!r}: expected rocksdb:// or memory://")
        if not 0 < self.web_port < 65536:
            raise SettingsError(f"CHURNWATCH_WEB_PORT={self.web_port}: not a port")
        if self.web_url is not None and not self.web_url.startswith(("http://", "https://")):
            raise SettingsError(f"CHURNWATCH_WEB_URL={self.web_url!r}: expected an http(s):// URL")
        if self.batch_size < 1:
            raise SettingsError("CHURNWATCH_BATCH_SIZE must be >= 1")
        if self.prefetch not in (0, 1):
            raise SettingsError(f"CHURNWATCH_PREFETCH={self.prefetch}: expected 0 or 1")
        if not 0 <= self.fetch_max_wait_ms <= 60_000:
            raise SettingsError("CHURNWATCH_FETCH_MAX_WAIT_MS must be in [0, 60000]")
        if not 0 < self.batch_timeout_s <= 60:
            raise SettingsError("CHURNWATCH_BATCH_TIMEOUT_S must be in (0, 60]")
        if not 0 < self.commit_interval_s <= 3600:
            raise SettingsError("CHURNWATCH_COMMIT_INTERVAL_S must be in (0, 3600]")
        if self.commit_every < 1:
            raise SettingsError("CHURNWATCH_COMMIT_EVERY must be >= 1")
        if not 100 <= self.gc_gen0 <= 10_000_000:
            raise SettingsError("CHURNWATCH_GC_GEN0 must be in [100, 10000000]")
        if not 0 <= self.store_flush_s <= 3600:
            raise SettingsError("CHURNWATCH_STORE_FLUSH_S must be in [0, 3600]")
        if not 0 < self.max_skew_s <= 30 * 86400:
            raise SettingsError("CHURNWATCH_MAX_SKEW_S must be in (0, 2592000]")
        if not 0 <= self.recovery_hold_s <= 3600:
            raise SettingsError("CHURNWATCH_RECOVERY_HOLD_S must be in [0, 3600]")
        if not 0 <= self.checkpoint_hold_s <= 3600:
            raise SettingsError("CHURNWATCH_CHECKPOINT_HOLD_S must be in [0, 3600]")
        if not self.app_id.strip() or not _APP_ID.fullmatch(self.app_id):
            raise SettingsError(
                f"CHURNWATCH_APP_ID={self.app_id!r}: expected letters, digits, '.', '_' or '-' (it names the "
                "consumer group and the internal topics; empty would join another deployment's group)"
            )
        if self.log_level.lower() not in _LOG_LEVELS:
            raise SettingsError(f"CHURNWATCH_LOG_LEVEL={self.log_level!r}: expected one of {sorted(_LOG_LEVELS)}")
        if not _HOST.fullmatch(self.web_host):
            raise SettingsError(f"CHURNWATCH_WEB_HOST={self.web_host!r}: not a host name or IP address")
        if not 6 <= self.session_timeout_s <= 1800:
            raise SettingsError("CHURNWATCH_SESSION_TIMEOUT_S must be in [6, 1800] (the broker's group session limits)")
        if not 0 < self.stall_s <= 86400:
            raise SettingsError("CHURNWATCH_STALL_S must be in (0, 86400]")
        if not 1 <= self.broker_down_s <= 3600:
            raise SettingsError("CHURNWATCH_BROKER_DOWN_S must be in [1, 3600]")
        if not 1 <= self.shutdown_grace_s <= 3600:
            raise SettingsError("CHURNWATCH_SHUTDOWN_GRACE_S must be in [1, 3600]")
        if self.config_path is not None and not Path(self.config_path).is_file():
            raise SettingsError(f"CHURNWATCH_CONFIG={self.config_path!r}: no such file")
        names = [
            self.topic_calls,
            self.topic_sms,
            self.topic_recharges,
            self.topic_profiles,
            self.topic_alarms,
            self.topic_deadletter,
            self.topic_shadow_contacts,
            self.topic_shadow_bands,
            self.topic_shadow_evidence,
        ]
        if len(set(names)) != len(names):
            raise SettingsError(f"topic names must be distinct: {names}")

    @property
    def shadow_topics(self) -> tuple[str, str, str]:
        """The second-SIM join's internal topics: contacts, bands, evidence."""
        return (self.topic_shadow_contacts, self.topic_shadow_bands, self.topic_shadow_evidence)

    @property
    def changelog_topics(self) -> tuple[str, str, str]:
        """The changelog topics of the service's tables, as Faust names them."""
        return tuple(f"{self.app_id}-{t}-changelog" for t in (STATE_TABLE, PEERS_TABLE, BANDS_TABLE))

    @property
    def input_topics(self) -> tuple[str, str, str, str]:
        """Input topics in source-index order (0 calls, 1 sms, 2 recharges, 3 profiles)."""
        return (self.topic_calls, self.topic_sms, self.topic_recharges, self.topic_profiles)

    def kafka_client_kwargs(self) -> dict:
        """Keyword arguments for aiokafka clients (producer/consumer/admin), security included."""
        kw: dict = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            kw.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if "SSL" in self.security_protocol:
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return kw

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        unknown = sorted(k for k in env if k.startswith("CHURNWATCH_") and k not in ENV_VARS and k not in _TOOLING_VARS)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(ENV_VARS))}")
        kwargs: dict = {}
        types = {f.name: f.type for f in fields(cls)}
        for var, name in ENV_VARS.items():
            raw = env.get(var)
            if raw == "" and var in _NAMES:
                raise SettingsError(
                    f"{var} is set but empty: it names a consumer group or a topic (unset it for the default "
                    f"{getattr(cls, name)!r})"
                )
            if raw is None or raw == "":
                continue
            typ = types[name]
            try:
                if typ == "int":
                    kwargs[name] = int(raw)
                elif typ == "float":
                    kwargs[name] = float(raw)
                else:
                    kwargs[name] = raw
            except ValueError:
                raise SettingsError(f"{var}={raw!r}: expected {typ}") from None
        return cls(**kwargs)


ENV_VARS: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "bootstrap_servers",
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "sasl_username",
    "KAFKA_SASL_PASSWORD": "sasl_password",
    "KAFKA_SSL_CAFILE": "ssl_cafile",
    "KAFKA_SSL_CERTFILE": "ssl_certfile",
    "KAFKA_SSL_KEYFILE": "ssl_keyfile",
    "CHURNWATCH_APP_ID": "app_id",
    "CHURNWATCH_TOPIC_CALLS": "topic_calls",
    "CHURNWATCH_TOPIC_SMS": "topic_sms",
    "CHURNWATCH_TOPIC_RECHARGES": "topic_recharges",
    "CHURNWATCH_TOPIC_PROFILES": "topic_profiles",
    "CHURNWATCH_TOPIC_ALARMS": "topic_alarms",
    "CHURNWATCH_TOPIC_DEADLETTER": "topic_deadletter",
    "CHURNWATCH_TOPIC_SHADOW_CONTACTS": "topic_shadow_contacts",
    "CHURNWATCH_TOPIC_SHADOW_BANDS": "topic_shadow_bands",
    "CHURNWATCH_TOPIC_SHADOW_EVIDENCE": "topic_shadow_evidence",
    "CHURNWATCH_PARTITIONS": "partitions",
    "CHURNWATCH_STORE": "store",
    "CHURNWATCH_DATA_DIR": "data_dir",
    "CHURNWATCH_WEB_HOST": "web_host",
    "CHURNWATCH_WEB_PORT": "web_port",
    "CHURNWATCH_WEB_URL": "web_url",
    "CHURNWATCH_CONFIG": "config_path",
    "CHURNWATCH_BATCH_SIZE": "batch_size",
    "CHURNWATCH_BATCH_TIMEOUT_S": "batch_timeout_s",
    "CHURNWATCH_FETCH_MAX_WAIT_MS": "fetch_max_wait_ms",
    "CHURNWATCH_PREFETCH": "prefetch",
    "CHURNWATCH_COMMIT_INTERVAL_S": "commit_interval_s",
    "CHURNWATCH_COMMIT_EVERY": "commit_every",
    "CHURNWATCH_STORE_FLUSH_S": "store_flush_s",
    "CHURNWATCH_MAX_SKEW_S": "max_skew_s",
    "CHURNWATCH_STALL_S": "stall_s",
    "CHURNWATCH_BROKER_DOWN_S": "broker_down_s",
    "CHURNWATCH_SHUTDOWN_GRACE_S": "shutdown_grace_s",
    "CHURNWATCH_CHECKPOINT_HOLD_S": "checkpoint_hold_s",
    "CHURNWATCH_RECOVERY_HOLD_S": "recovery_hold_s",
    "CHURNWATCH_SESSION_TIMEOUT_S": "session_timeout_s",
    "CHURNWATCH_INSTANCE_ID": "instance_id",
    "CHURNWATCH_GC_GEN0": "gc_gen0",
    "CHURNWATCH_LOG_LEVEL": "log_level",
}

# Variables read by the dev tooling (devkafka, tests), not by the worker.
_TOOLING_VARS = {
    "CHURNWATCH_KAFKA_CACHE",
    "CHURNWATCH_KAFKA_VAR",
    "CHURNWATCH_DEVKAFKA_PORT",
    "CHURNWATCH_TEST_KAFKA_PORT",
}
