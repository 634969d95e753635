"""Engine configuration: one frozen, validated dataclass holding every threshold.

Defaults (all configurable; ``EngineConfig.from_toml(path)`` / ``from_mapping(dict)``):

=============================  =========  ==========================================================
key                            default    meaning
=============================  =========  ==========================================================
timezone                       Asia/      day buckets are calendar days in this zone. The UTC offset
                               Shanghai   is fixed at config time (taken on 2025-01-01); zones with
                                          DST get their winter offset (documented limitation).
ring_days                      38         daily buckets kept (>= 35: 28 baseline + 7 recent; the rest
                                          is room for events of the next days, applied before a day
                                          is decided: see decision_grace_s)
max_future_s                   172800     reject ts > clock()+this (2 days); without a clock (the
                                          backtest), ts > watermark+this, but for a gap in the feed:
                                          GAP_CONFIRM (3) events in a row past it, close together, are
                                          a jump of event time (the last of them accepted)
max_watermark_jump_s           2592000    also reject ts > watermark+this (30 days): a corrupt
                                          far-future event must not move event time; generous, so
                                          that a feed outage, or one input topic read days ahead of
                                          another while catching up, never rejects valid events
decision_grace_s               43200      a day is decided (every subscriber active on it, silent or
                                          lapsing, or not healthy) once event time, complete across
                                          the inputs, is this far (12 h) into the next day: events
                                          up to this late still count for their day
recent_days                    7          recent window: the 7 complete days before "today"
baseline_days                  28         baseline window: the 28 days before the recent window
drop_threshold                 0.515      traffic_drop trips at a relative drop >= 0.515
deep_drop_threshold            0.8        a drop >= 0.8 is alarm-level when the week before was
                                          already down by drop_threshold (a sustained fall)
deep_trend_threshold           0.75       ... and the last two weeks down >= 0.75 (the trend below):
                                          a collapse, not a noisy subscriber's holiday week
drop_confirm_threshold         0.3        ... and a drop needs the week before the recent one to be
                                          down >= 0.3 already (vs the 21 days before it): one
                                          quiet week, e.g. a holiday, is not a drop (0 disables;
                                          0.3 > 2/7: two holiday days in it do not confirm)
trend_threshold                0.546      traffic_drop also trips on a two-week trend: the last 14
                                          days down >= 0.546 vs the 21 days before them ...
trend_week_threshold           0.3        ... with each of the two weeks down >= 0.3 (slow decays
                                          whose 28-day baseline is already decaying; issue 5)
drop_tail_days                 3          both forms of traffic_drop need the last 3 days ...
drop_tail_threshold            0.6        ... down >= 0.6 vs the same 21 days: a churner is lowest at
                                          the end, a subscriber back from a holiday is not (0 = off)
drop_min_baseline_active_days  10         baseline needs >= 10 active (non-holiday) days ...
drop_min_recent_active_days    3          ... and >= 3 active recent days (fewer = silence case)
erosion_threshold              0.675      contact_erosion trips when >= 67.5% of the baseline circle
                                          (weighted by contact days) is not contacted recently, for
                                          subscribers still active (>= drop_min_recent_active_days)
drop_min_z                     0          traffic_drop's weekly drop and trend also need the events (calls +
                                          SMS) of the recent week / two weeks to fall short of what the
                                          baseline expects by >= this many Poisson standard deviations
                                          (0 = off): a low-traffic subscriber's quiet week is noise
drift_threshold                0          long memory (0 = off): contact_erosion also trips when the
                                          circle's contact days per day over the last 14 days are
                                          down by this much against days 36-63 before (drifters
                                          decay over 30-60 days; the 35-day ring's baseline is
                                          already decaying); needs 63 days since first seen ...
drift_min_weight               20         ... and >= 20 contact days in the old window
drift_old_days                 63         ... the old window: the 28 days from this many days back
                                          (42-64; 63 = days 36-63 before, 42 = the 28 days just
                                          before the last 14); needs this many days since first seen
circle_min_days                2          a peer is in the baseline circle with >= 2 contact days
circle_min_members             3          erosion / competitor share need >= 3 baseline members
competitor_rise_threshold      0.3        competitor_contacts trips at a rise >= 0.3 of the competitor
                                          share of the circle (weighted by contact days) ...
competitor_min_weight          10         ... with >= 10 contact days in each window. Alone it is
                                          below a warning: the contacts of a switcher see the
                                          switcher's new rival number too
hotline_days                   7          competitor_hotline: dials within the last 7 days, >= 1
hotline_min_calls              1          dial trips (alarm-level); decided at once, on the dial
dual_sim_days                  30         dual_sim evidence counts for 30 days. Evidence: a number
                                          switches to a handset (IMEI) seen with another of our
                                          numbers within the window: evidence for the number(s) that
                                          used it before (their handset was handed down or now
                                          carries another SIM); two numbers sharing a handset from
                                          their first IMEI on are not evidence
shadow_enabled                 true       the second-SIM join (stream/engine/shadow.py): dual_sim also
                                          trips on a new competitor number X that reaches S's
                                          weighted circle while S's traffic to it falls
shadow_min_jaccard             0.2        MinHash Jaccard of X's contacts vs S's circle before X
shadow_min_containment         0.3        ... >= 30% of X's contacts inside S's circle (a friend's
                                          number reaching shared friends also reaches others) ...
shadow_min_overlap             3          ... >= 3 strong circle members reached by X ...
shadow_min_weight_share        0.7        ... carrying >= 70% of the circle's contact-day weight
shadow_min_decline             0.2        S's contact days with those members since X appeared are
                                          down >= 20% vs the 28 days before X (measured over >= 3
                                          days); a shared friend of a family member is not
shadow_warmup_days             28         X must first appear >= 28 days after S was first seen (a
                                          number seen since the data began is not new) ...
shadow_new_days                56         ... and within the last 56 days
shadow_publish_drop            0.15       S publishes its circle's LSH bands when its traffic or
                                          circle is down >= 0.15 (drop or erosion) ...
shadow_refresh_days            14         ... again after 14 days, or when the circle changed
                                          (tuning seed 1: 0.3 and decline 0.3 found 384 of 600
                                          switchers' shadows, 201 of them >= 7 days before churn;
                                          0.15 and decline 0.2 the same 384, 246 >= 7 days, loyal
                                          false pairs 7 -> 9 of 8 000, band records ~2x)
shadow_expire_days             35         X sketches and band entries unseen for 35 days expire
shadow_band_capacity           8          entries kept per side under one band key
dual_sim_alarm_level           false      true: a dual SIM alone is alarm-level (else a warning,
                                          an alarm with any other signal)
recharge_lapse_factor          1.15       recharge_lapse: no recharge for >= 1.15x the usual
                                          interval (the subscriber's own mean gap) ...
recharge_min_overdue_days      2.5        ... and >= 2.5 days beyond it (recharges run up to ~2
                                          days late; 1.15x covers the estimate's noise on long
                                          intervals)
recharge_min_count             2          usual interval needs >= 2 recharges (one gap: a monthly
                                          recharger shows only 2-3 in the ring's lifetime); with a
                                          single gap both tolerances above are doubled (1.3x, 5 d)
recharge_prior_days            30         a prepaid subscriber with too short a history of its own
                                          (fewer than recharge_min_count recharges) is judged
                                          against a prior cadence instead: this many days, or (next
                                          key) its recharge amount's worth of its monthly ARPU
                                          (0 = off: no lapse below recharge_min_count recharges)
recharge_prior_from_amount     true       ... the prior is 30 d x mean recharge amount / monthly
                                          ARPU (prepaid ARPU is what the recharges add up to: a top-up
                                          of half the ARPU lasts about half a month) ...
recharge_prior_min_days /      5 / 45     ... clipped to these days
recharge_prior_max_days
recharge_prior_factor /        1.5 / 7    ... overdue against a prior: >= 1.5x it and >= 7 days beyond
recharge_prior_overdue_days               it (denominations: a top-up rounded down to the next note
                                          makes the amount's cadence short by up to a third)
recharge_prior_weight          0          the prior also counts as this many gaps beside the own
                                          mean gap, from recharge_min_count recharges on (0: the own
                                          interval alone)
recharge_prior_unseen          true       true: a prepaid subscriber with no recharge at all since
                                          it was first seen is overdue against the prior cadence
                                          counted from its first day, overdue at
recharge_prior_unseen_factor   1.2        ... this many times recharge_prior_days (its last recharge
                                          was before it was first seen: the time is a lower bound)
lapse_decline_factor           1.2        a lapse that shows in the traffic (0 = off): recharge_lapse
                                          also trips, sooner, at this many usual intervals (own or
                                          prior) without a recharge when the traffic is going down
                                          with it: the last week down >= lapse_decline_drop against
                                          the baseline and the last drop_tail_days down >=
                                          lapse_decline_tail (a prepaid balance running dry)
lapse_decline_drop             0.4        ... the weekly drop it needs
lapse_decline_tail             0.3        ... and the drop of the last drop_tail_days
silence_days                   7          silence trips after 7 silent non-holiday days
silence_min_active_days        10         ... for subscribers with >= 10 active days in the ring
churned_silence_days           21         silence >= 21 days: phase churned
warn_score / alarm_score       0.358/0.676 score thresholds for warning / alarm (these score
                                          weights and thresholds were retuned on 2026-12-02 on four
                                          tuning populations: fewer loyal warned at the same recall;
                                          README "Alarm quality")
cooldown_days                  7          no repeat record of the same or a lower phase within 7
                                          days of the last one
recover_min_active_days        3          recovery needs >= 3 active recent days ...
recover_clear_days             7          ... and the signals clear on 7 consecutive days (daily
                                          sweeps evaluate every subscriber not healthy): one good
                                          day inside a falling trend does not end the episode
w_drop, w_erosion              0.655, 0.497 score contribution = weight * value (a drop >= 0.55 alone
                                          is a warning, never an alarm: 0.655 < alarm_score; only a
                                          sustained deep drop is); drop and erosion
                                          both describe fading use and count once (the larger)
w_hotline, w_dual_sim          0.7, 0.5   score contribution when tripped
w_competitor_contacts          0.25
w_recharge_lapse               0.367      (alone a warning: a prepaid subscriber overdue)
w_silence                      0.32       at the threshold, rising by +0.5 up to churned_silence_days
                                          (alone a warning from ~9 silent days: 0.32 < warn_score; set
                                          0.4 to warn at silence_days)
tier_high_arpu / tier_mid_arpu 150 / 60   value tier by monthly ARPU (currency units)
influence_high / influence_mid 8 / 5      contact-circle size that lifts the tier
loyal_tenure_days              730        tenure that lifts a low tier to mid
seasonal_new_share             0.5        no competitor evidence and >= 50% of recent contact weight
                                          on new peers: reason "seasonal", capped at warning
holidays                       ()         ISO date ranges (e.g. CN_HOLIDAYS): a recent window
                                          touching them is "in season" (reason seasonal, phase capped at warning
                                          unless competitor evidence); holiday days are left out
                                          of traffic_drop and silence.
void_fraction                  0.1        a feed outage: a complete day whose calls, or SMS, over
                                          every subscriber the engine holds, are below this share of
                                          the median of the 7 days before it (in the 35-day window)
                                          normal for that kind is void: left out of traffic_drop and
                                          silence like a holiday (0 = off) ...
void_min_events                2000       ... when those days reach >= 2000 calls (SMS) (a small
                                          population's quiet day is not an outage)
void_min_recharges             20         a day whose recharges fall so, those days reaching >= 20,
                                          lost them: a recharge expected within the lapse margin of
                                          the latest such outage restarts the interval at its end
=============================  =========  ==========================================================
"""

from __future__ import annotations

import datetime as _dt
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream.operators import COUNTRY_CODE, DEFAULT_COMPETITOR_HOTLINES, DEFAULT_OWN_HOTLINES, DEFAULT_PREFIXES

__all__ = ["EngineConfig", "ConfigError", "CN_HOLIDAYS"]


class ConfigError(ValueError):
    """A bad engine configuration (unknown key, bad value); the message names the key."""


# An example calendar to configure (not the default): Spring Festival (migrant workers travel home
# ~2 weeks before and come back ~3 weeks after) and the National Day golden week.
CN_HOLIDAYS: tuple[tuple[str, str], ...] = (
    ("2025-01-14", "2025-02-25"),
    ("2025-10-01", "2025-10-08"),
    ("2026-02-03", "2026-03-15"),
    ("2026-10-01", "2026-10-08"),
    ("2027-01-23", "2027-03-04"),
    ("2027-10-01", "2027-10-07"),
)


@dataclass(frozen=True)
class EngineConfig:
    timezone: str = "Asia/Shanghai"
    ring_days: int = 38
    max_future_s: float = 172800.0
    max_watermark_jump_s: float = 2592000.0
    decision_grace_s: float = 43200.0
    prefixes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PREFIXES))
    country_code: str = COUNTRY_CODE
    competitor_hotlines: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_COMPETITOR_HOTLINES))
    own_hotlines: tuple[str, ...] = DEFAULT_OWN_HOTLINES
    own_operator: str = "own"
    recent_days: int = 7
    baseline_days: int = 28
    drop_threshold: float = 0.515
    deep_drop_threshold: float = 0.8
    deep_trend_threshold: float = 0.75
    drop_confirm_threshold: float = 0.3
    trend_threshold: float = 0.546
    trend_week_threshold: float = 0.3
    drop_tail_days: int = 3
    drop_tail_threshold: float = 0.6
    drop_min_baseline_active_days: int = 10
    drop_min_recent_active_days: int = 3
    erosion_threshold: float = 0.675
    drift_threshold: float = 0.0
    drop_min_z: float = 0.0
    drift_min_weight: int = 20
    drift_old_days: int = 63
    circle_min_days: int = 2
    circle_min_members: int = 3
    competitor_rise_threshold: float = 0.3
    competitor_min_weight: int = 10
    hotline_days: int = 7
    hotline_min_calls: int = 1
    dual_sim_days: int = 30
    recharge_lapse_factor: float = 1.15
    recharge_min_overdue_days: float = 2.5
    recharge_min_count: int = 2
    recharge_prior_days: float = 30.0
    recharge_prior_from_amount: bool = True
    recharge_prior_min_days: float = 5.0
    recharge_prior_max_days: float = 45.0
    recharge_prior_factor: float = 1.5
    recharge_prior_overdue_days: float = 7.0
    recharge_prior_weight: float = 0.0
    recharge_prior_unseen: bool = True
    recharge_prior_unseen_factor: float = 1.2
    lapse_decline_factor: float = 1.2
    lapse_decline_drop: float = 0.4
    lapse_decline_tail: float = 0.3
    silence_days: int = 7
    silence_min_active_days: int = 10
    churned_silence_days: int = 21
    warn_score: float = 0.358
    alarm_score: float = 0.676
    cooldown_days: int = 7
    recover_min_active_days: int = 3
    recover_clear_days: int = 7
    w_drop: float = 0.655
    w_erosion: float = 0.497
    w_hotline: float = 0.7
    w_dual_sim: float = 0.5
    w_competitor_contacts: float = 0.25
    dual_sim_alarm_level: bool = False
    shadow_enabled: bool = True
    shadow_min_jaccard: float = 0.2
    shadow_min_containment: float = 0.3
    shadow_min_overlap: int = 3
    shadow_min_weight_share: float = 0.7
    shadow_min_decline: float = 0.2
    shadow_warmup_days: int = 28
    shadow_new_days: int = 56
    shadow_publish_drop: float = 0.15
    shadow_refresh_days: int = 14
    shadow_expire_days: int = 35
    shadow_band_capacity: int = 8
    w_recharge_lapse: float = 0.367
    w_silence: float = 0.32
    tier_high_arpu: float = 150.0
    tier_mid_arpu: float = 60.0
    influence_high: int = 8
    influence_mid: int = 5
    loyal_tenure_days: int = 730
    seasonal_new_share: float = 0.5
    holidays: tuple[tuple[str, str], ...] = ()
    void_fraction: float = 0.1
    void_min_events: int = 2000
    void_min_recharges: int = 20

    # ---------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"engine config: {key}: {msg}")

        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int",) and (type(v) is not int):
                raise bad(f.name, f"must be an integer, got {v!r}")
            if f.type in ("bool",) and (type(v) is not bool):
                raise bad(f.name, f"must be true or false, got {v!r}")
            if f.type in ("float",):
                if type(v) is bool or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise bad(f.name, f"must be a finite number, got {v!r}")
                object.__setattr__(self, f.name, float(v))
        try:
            tz = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise bad("timezone", f"unknown time zone {self.timezone!r}") from exc
        off = tz.utcoffset(_dt.datetime(2025, 1, 1))
        object.__setattr__(self, "utc_offset_s", int(off.total_seconds()) if off is not None else 0)
        if not 0.0 <= self.void_fraction < 1.0:
            raise bad("void_fraction", f"must be in [0, 1), got {self.void_fraction}")
        if self.void_min_events < 1 or self.void_min_recharges < 1:
            key = "void_min_events" if self.void_min_events < 1 else "void_min_recharges"
            raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        if self.ring_days < 35 or self.ring_days > 60:
            raise bad("ring_days", f"must be in 35..60, got {self.ring_days}")
        if self.recent_days < 1 or self.baseline_days < 1:
            raise bad("recent_days/baseline_days", "must be >= 1")
        if self.recent_days + self.baseline_days + 1 > self.ring_days:
            raise bad(
                "ring_days", f"must be >= recent_days + baseline_days + 1 = {self.recent_days + self.baseline_days + 1}"
            )
        if self.hotline_days < 1 or self.hotline_days > self.ring_days:
            raise bad("hotline_days", f"must be in 1..ring_days, got {self.hotline_days}")
        if self.max_future_s < 0:
            raise bad("max_future_s", "must be >= 0")
        if not 0 <= self.decision_grace_s <= 7 * 86400:
            raise bad("decision_grace_s", "must be in 0..604800 (7 days)")
        if self.max_watermark_jump_s < self.max_future_s:
            raise bad("max_watermark_jump_s", "must be >= max_future_s")
        for k in (
            "drop_threshold",
            "deep_drop_threshold",
            "trend_threshold",
            "erosion_threshold",
            "competitor_rise_threshold",
            "warn_score",
            "alarm_score",
            "seasonal_new_share",
            "w_drop",
            "w_erosion",
            "w_hotline",
            "w_dual_sim",
            "w_competitor_contacts",
            "w_recharge_lapse",
            "w_silence",
        ):
            v = getattr(self, k)
            if not 0.0 < v <= 1.0:
                raise bad(k, f"must be in (0, 1], got {v}")
        if not 1 <= self.drop_tail_days <= self.recent_days:
            raise bad("drop_tail_days", f"must be in 1..recent_days, got {self.drop_tail_days}")
        for k in (
            "drop_confirm_threshold",
            "trend_week_threshold",
            "drop_tail_threshold",
            "deep_trend_threshold",
            "shadow_min_jaccard",
            "shadow_min_containment",
            "shadow_min_weight_share",
            "shadow_min_decline",
            "shadow_publish_drop",
        ):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise bad(k, f"must be in [0, 1], got {getattr(self, k)}")
        if self.deep_drop_threshold < self.drop_threshold:
            raise bad("deep_drop_threshold", "must be >= drop_threshold")
        if self.alarm_score < self.warn_score:
            raise bad("alarm_score", "must be >= warn_score")
        for k in (
            "drop_min_baseline_active_days",
            "drop_min_recent_active_days",
            "circle_min_days",
            "circle_min_members",
            "competitor_min_weight",
            "hotline_min_calls",
            "dual_sim_days",
            "recharge_min_count",
            "silence_days",
            "silence_min_active_days",
            "churned_silence_days",
            "recover_min_active_days",
            "recover_clear_days",
            "influence_high",
            "influence_mid",
            "shadow_min_overlap",
            "shadow_warmup_days",
            "shadow_new_days",
            "shadow_refresh_days",
            "shadow_expire_days",
            "shadow_band_capacity",
        ):
            if getattr(self, k) < 1:
                raise bad(k, f"must be >= 1, got {getattr(self, k)}")
        if self.cooldown_days < 0 or self.loyal_tenure_days < 0:
            raise bad("cooldown_days/loyal_tenure_days", "must be >= 0")
        if self.recharge_min_count < 2:
            raise bad("recharge_min_count", "must be >= 2 (an interval needs two recharges)")
        if self.churned_silence_days <= self.silence_days:
            raise bad("churned_silence_days", "must be > silence_days")
        if self.recharge_lapse_factor < 1.0 or self.recharge_min_overdue_days < 0:
            raise bad("recharge_lapse_factor", "must be >= 1 (and recharge_min_overdue_days >= 0)")
        if not 0 <= self.drop_min_z <= 10:
            raise bad("drop_min_z", "must be in [0, 10] (0 = off)")
        if not 0 <= self.drift_threshold <= 1 or self.drift_min_weight < 1:
            raise bad("drift_threshold", "must be in [0, 1] (0 = off), with drift_min_weight >= 1")
        if not (self.lapse_decline_factor == 0 or self.lapse_decline_factor >= 1.0) or not (
            0 <= self.lapse_decline_drop <= 1 and 0 <= self.lapse_decline_tail <= 1
        ):
            raise bad("lapse_decline_factor", "must be 0 (off) or >= 1, with lapse_decline_drop/_tail in [0, 1]")
        if not 42 <= self.drift_old_days <= 64:
            raise bad(
                "drift_old_days", "must be in [42, 64] (28 old days before the last 14, within the 64-day circle masks)"
            )
        if (
            self.recharge_prior_days < 0
            or self.recharge_prior_weight < 0
            or self.recharge_prior_factor < 1.0
            or self.recharge_prior_unseen_factor < 1.0
            or self.recharge_prior_overdue_days < 0
            or not 0 < self.recharge_prior_min_days <= self.recharge_prior_max_days
        ):
            raise bad("recharge_prior_days", "priors must be >= 0, with 0 < recharge_prior_min_days <= _max_days")
        if self.tier_high_arpu < self.tier_mid_arpu or self.tier_mid_arpu < 0:
            raise bad("tier_high_arpu", "must be >= tier_mid_arpu >= 0")
        self._normalise_tables(bad)

    def _normalise_tables(self, bad) -> None:
        """Validate the prefix, hotline and holiday tables and store them in their canonical forms."""
        if not isinstance(self.prefixes, Mapping) or not all(
            isinstance(k, str) and k.isascii() and k.isdigit() and isinstance(v, str) for k, v in self.prefixes.items()
        ):
            raise bad("prefixes", "must map digit prefixes to operator codes")
        object.__setattr__(self, "prefixes", dict(self.prefixes))
        if not isinstance(self.competitor_hotlines, Mapping) or not all(
            isinstance(k, str) and k.isascii() and k.isdigit() for k in self.competitor_hotlines
        ):
            raise bad("competitor_hotlines", "must map digit numbers to operator codes")
        object.__setattr__(self, "competitor_hotlines", dict(self.competitor_hotlines))
        own = tuple(self.own_hotlines)
        if not all(isinstance(x, str) and x.isdigit() for x in own):
            raise bad("own_hotlines", "must be digit strings")
        if set(own) & set(self.competitor_hotlines):
            raise bad("own_hotlines", "a number cannot be both our own and a competitor's hotline")
        object.__setattr__(self, "own_hotlines", own)
        if not isinstance(self.country_code, str) or not self.country_code.isdigit():
            raise bad("country_code", "must be a digit string")
        hol = []
        try:
            for a, b in self.holidays:
                da, db = _dt.date.fromisoformat(a), _dt.date.fromisoformat(b)
                if db < da:
                    raise ValueError(f"{a}..{b} ends before it starts")
                hol.append((str(a), str(b)))
        except (TypeError, ValueError) as exc:
            raise bad("holidays", f"must be a list of [start, end] ISO dates ({exc})") from exc
        object.__setattr__(self, "holidays", tuple(hol))
        epoch = _dt.date(1970, 1, 1)
        days = set()
        for a, b in hol:
            d0 = (_dt.date.fromisoformat(a) - epoch).days
            d1 = (_dt.date.fromisoformat(b) - epoch).days
            days.update(range(d0, d1 + 1))
        object.__setattr__(self, "holiday_days", frozenset(days))

    # ---------------------------------------------------------------- helpers
    def day_of(self, ts_s: float) -> int:
        """Day index (days since 1970-01-01 in the configured zone, fixed offset)."""
        return int((ts_s + self.utc_offset_s) // 86400)

    def date_of_day(self, day: int) -> str:
        return (_dt.date(1970, 1, 1) + _dt.timedelta(days=int(day))).isoformat()

    def day_start_s(self, day: int) -> float:
        return float(day * 86400 - self.utc_offset_s)

    def lapse_decline_threshold(self) -> float:
        """The overdue ratio a ``recharge_lapse`` signal reports as its threshold when it is not
        tripped by the lapse rule itself: the declining-traffic rule's, when that is on."""
        return self.lapse_decline_factor if self.lapse_decline_factor > 0 else self.recharge_lapse_factor

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EngineConfig:
        if not isinstance(data, Mapping):
            raise ConfigError("engine config: must be a table/mapping")
        data = dict(data)
        if "engine" in data and isinstance(data["engine"], Mapping) and len(data) == 1:
            data = dict(data["engine"])
        known = {f.name for f in fields(cls)}
        for k in data:
            if k not in known:
                raise ConfigError(f"engine config: {k}: unknown key")
        for k in ("own_hotlines",):
            if k in data and isinstance(data[k], list):
                data[k] = tuple(data[k])
        if "holidays" in data:
            try:
                data["holidays"] = tuple(tuple(x) for x in data["holidays"])
            except TypeError as exc:
                raise ConfigError("engine config: holidays: must be a list of [start, end] ISO dates") from exc
        try:
            return cls(**data)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"engine config: {exc}") from exc

    @classmethod
    def from_toml(cls, path) -> EngineConfig:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"engine config: cannot read {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"engine config: {path}: invalid TOML: {exc}") from exc
        return cls.from_mapping(data)
