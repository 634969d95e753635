"""The wire contract: topic names, event/alarm field names and codes, shared with ``schemas/``.

Outside systems (CRM, outbound-call, outside tests) are written against these names. Keep them;
additive changes only. ``tests/test_schemas.py`` checks that this module and ``schemas/`` agree.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "SCHEMA_VERSION",
    "DEFAULT_TOPICS",
    "SHADOW_TOPIC_SUFFIXES",
    "EVENT_TYPES",
    "KIND_CALL",
    "KIND_SMS",
    "KIND_RECHARGE",
    "KIND_PROFILE",
    "KIND_CODES",
    "DIRECTIONS",
    "PLANS",
    "OWN_OPERATOR",
    "SIGNALS",
    "PHASES",
    "ALARM_PHASES",
    "REASONS",
    "TIERS",
    "ALARM_FIELDS",
    "DEADLETTER_FIELDS",
    "mask_msisdn",
    "alarm_id",
]

SCHEMA_VERSION = 1

# Default topic names (each can be overridden by a setting, see stream/settings.py).
DEFAULT_TOPICS = {
    "calls": "cdr.calls",
    "sms": "cdr.sms",
    "recharges": "cdr.recharges",
    "profiles": "subscriber.profiles",
    "alarms": "churn.alarms",
    "deadletter": "churn.deadletter",
}
# The second-SIM join's internal routing topics (stream/service/shadow.py) are named after the app
# id, like Faust's changelogs: ``<app id>.shadow.contacts`` (keyed by competitor number),
# ``<app id>.shadow.bands`` (keyed by LSH band), ``<app id>.shadow.evidence`` (keyed by subscriber,
# co-partitioned with the inputs).
SHADOW_TOPIC_SUFFIXES = {"contacts": ".shadow.contacts", "bands": ".shadow.bands", "evidence": ".shadow.evidence"}

# Input event kinds: the JSON "type" field, and the small integer code used in columnar batches.
EVENT_TYPES = ("call", "sms", "recharge", "profile")
KIND_CALL, KIND_SMS, KIND_RECHARGE, KIND_PROFILE = 0, 1, 2, 3
KIND_CODES = {"call": KIND_CALL, "sms": KIND_SMS, "recharge": KIND_RECHARGE, "profile": KIND_PROFILE}

DIRECTIONS = ("out", "in")
PLANS = ("prepaid", "postpaid")
OWN_OPERATOR = "own"  # peer_operator value for a peer on our own network

# Alarm vocabulary.
SIGNALS = (
    "traffic_drop",
    "competitor_hotline",
    "dual_sim",
    "contact_erosion",
    "competitor_contacts",
    "recharge_lapse",
    "silence",
)
PHASES = ("healthy", "warning", "alarm", "churned")  # internal lifecycle states
ALARM_PHASES = ("warning", "alarm", "churned", "recovered")  # the `phase` values an alarm record carries
REASONS = ("competitor_switch", "seasonal", "low_usage", "arrears", "unknown")
TIERS = ("high", "mid", "low")

# Field names of the output records (schemas/alarm.schema.json, schemas/deadletter.schema.json).
ALARM_FIELDS = (
    "alarm_id",
    "msisdn",
    "phase",
    "score",
    "signals",
    "reason",
    "value_tier",
    "event_time",
    "emitted_at",
    "schema_version",
)
DEADLETTER_FIELDS = ("original_b64", "topic", "partition", "offset", "reason", "schema_version")


def mask_msisdn(msisdn: str | bytes | None) -> str:
    """Personal data: keep only the last 4 digits for logs (``8613800001234`` → ``*********1234``)."""
    if msisdn is None:
        return "<none>"
    if isinstance(msisdn, bytes):
        msisdn = msisdn.decode("utf-8", "replace")
    s = str(msisdn)
    if len(s) <= 4:
        return "*" * len(s)
    return "*" * (len(s) - 4) + s[-4:]


def alarm_id(msisdn: str, phase: str, event_day: int, episode: int = 0) -> str:
    """Deterministic alarm id: the same subscriber, phase, event-time day and episode give the
    same id, so an alarm emitted again after a replay is recognisably the same alarm."""
    h = hashlib.blake2b(f"{msisdn}|{phase}|{event_day}|{episode}".encode(), digest_size=12)
    return h.hexdigest()
