"""Population profiles: every behavioural constant of the simulator in one frozen dataclass.

``Profile()`` is the default population (the one the engine was tuned on, bit for bit); the named
profiles (``PROFILES``) and ``Profile.random(seed)`` describe operator populations whose parameters
were never used for tuning. A profile only changes numbers: the order of the plan's and the day
loop's draws from the simulation seed's generators is the same for every profile (``random`` draws
its parameters from a generator of its own), so ``Profile()`` reproduces the original output.

Ranges ``(lo, hi)`` of days are inclusive; lognormal parameters are ``(median, sigma)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

ARCHETYPES = ("loyal", "switcher", "silent_porter", "seasonal_migrant", "drifter", "prepaid_lapser")
DEFAULT_MIX: dict[str, float] = {
    "loyal": 0.80,
    "switcher": 0.06,
    "silent_porter": 0.03,
    "seasonal_migrant": 0.04,
    "drifter": 0.03,
    "prepaid_lapser": 0.04,
}
RANDOM = "random"


def _mix(**shares: float) -> tuple[float, ...]:
    """Archetype shares by name -> a tuple in ``ARCHETYPES`` order (missing ones are 0)."""
    unknown = set(shares) - set(ARCHETYPES)
    if unknown:
        raise ValueError(f"unknown archetypes: {sorted(unknown)}")
    return tuple(float(shares.get(a, 0.0)) for a in ARCHETYPES)


@dataclass(frozen=True)
class Profile:
    """Behavioural parameters of a simulated population (defaults = the default population)."""

    name: str = "default"
    # --- population: archetype mix (ARCHETYPES order), plans, ARPU, tenure
    mix: tuple[float, ...] = _mix(**DEFAULT_MIX)
    prepaid_share: tuple[float, ...] = (0.55, 0.5, 0.4, 0.75, 0.6, 1.0)  # per archetype
    arpu_prepaid: tuple[float, float] = (38.0, 0.5)  # lognormal (median, sigma), yuan/month
    arpu_postpaid: tuple[float, float] = (95.0, 0.55)
    drifter_arpu_factor: float = 0.6
    tenure: tuple[float, float] = (900.0, 0.9)  # lognormal days since activation
    key_group_share: float = 0.15  # of postpaid subscribers
    profile_update_share: float = 0.02
    # --- usage: outgoing calls / SMS per day (median subscriber), rhythms, durations
    calls_per_day: float = 2.2
    sms_per_day: float = 0.9
    usage_sigma: float = 0.45  # lognormal spread of the usage level between subscribers
    sms_sigma: float = 0.4  # extra spread of the SMS level
    incoming_factor: float = 0.9  # calls/SMS from outside numbers, relative to outgoing
    daily_noise_shape: float = 6.0  # gamma shape of the per-subscriber daily noise (mean 1)
    weekday_factor: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.03, 0.9, 0.85)  # Mon..Sun
    hour_weights: tuple[float, ...] = (
        0.6, 0.3, 0.2, 0.15, 0.15, 0.3, 0.9, 2.2, 4.0, 5.5, 6.3, 6.6,
        5.8, 5.2, 5.5, 5.7, 5.8, 6.0, 6.3, 6.9, 7.1, 6.3, 4.2, 1.9,
    )  # fmt: skip
    call_duration: tuple[float, float] = (75.0, 1.0)  # lognormal seconds
    unanswered_share: float = 0.12  # calls with duration 0
    cell_share: tuple[float, float, float] = (0.6, 0.3, 0.1)  # home / work / other cell
    # --- call graph
    community_size: tuple[float, float] = (40.0, 0.9)  # lognormal, clipped to 5..community_max
    community_max: int = 400
    contacts: tuple[float, float] = (12.0, 0.6)  # lognormal contacts per subscriber, clipped to 3..contacts_max
    contacts_max: int = 120
    own_contact_beta: tuple[float, float] = (5.5, 4.5)  # Beta: share of contacts who are our subscribers
    in_community_share: float = 0.85  # of own contacts
    outside_own_share: float = 0.03  # own-network contacts outside the population
    edge_sigma: float = 1.2  # lognormal edge weights
    competitor_weight: float = 0.8  # weight factor of competitor contacts
    competitor_pool_share: float = 0.5  # competitor contacts drawn from the community's shared pool
    competitor_pool_size: float = 0.6  # pool size per community member
    external_cu_share: float = 0.6  # competitor numbers on cu (else ct)
    services_per_sub: float = 0.4  # Poisson extra service numbers (10086, banks, rail) beyond one
    # --- loyal sub-variants and slow drift of the non-churners
    holiday_share: float = 0.10
    holiday_days: tuple[int, int] = (5, 9)
    holiday_level: float = 0.05  # share of the usual traffic while away
    handset_share: float = 0.05
    handdown_share: float = 0.25  # of handset changers (loyal and dual-SIM switchers)
    dual_own_sim_share: float = 0.005
    loyal_rival_hotline_share: float = 0.005
    trend_sd_per_day: float = 0.002  # usage drift exp(slope * day), slope ~ N(0, sd)
    rival_cu_share: float = 0.55  # switchers, porters and rival care calls going to cu (else ct)
    # --- switchers
    switcher_ramp_days: tuple[int, int] = (21, 42)  # ramp start before the churn day
    shadow_delay_days: tuple[int, int] = (0, 7)  # shadow SIM appears this long after the ramp start
    switcher_ramp_level: float = 0.93  # own activity between ramp start and shadow
    switcher_hotline_share: float = 0.90
    switcher_second_hotline: float = 0.4  # chance of a second care-line call
    switcher_dual_sim_handset_share: float = 0.40
    switcher_rival_calls: float = 0.6  # extra competitor calls per day during the ramp
    switcher_recharge_days: int = 7  # prepaid switchers stop recharging this long after the shadow
    shadow_contact_rate: float = 1.1  # shadow's calls/SMS to the contacts, relative to the old number
    # --- silent porters, migrants, drifters, lapsers
    ported_still_called: float = 0.7  # share of calls to a ported number that still happen
    migrant_quiet_days: tuple[int, int] = (21, 35)
    migrant_level: float = 0.04
    drifter_decay_days: tuple[int, int] = (30, 60)
    drifter_shape: float = 1.3  # activity (days left / decay length) ** shape
    lapser_decline_days: tuple[int, int] = (10, 20)
    lapser_recharge_share: tuple[float, ...] | None = None  # lapsers' own cadence shares (None: as everyone)
    # --- prepaid recharges
    recharge_every: tuple[int, ...] = (7, 10, 14, 30)
    recharge_share: tuple[float, ...] = (0.2, 0.15, 0.3, 0.35)
    recharge_jitter: tuple[int, int] = (-1, 2)  # days added to each interval
    recharge_amounts: tuple[int, ...] = (10, 20, 30, 50, 100, 200)
    # --- arrival lateness: cumulative shares on time / minutes late / hours late (rest: 12-30 h)
    late_breaks: tuple[float, float, float] = (0.85, 0.97, 0.997)
    on_time_mean_s: float = 20.0  # exponential delay of the on-time events
    late_minutes: tuple[float, float] = (1200.0, 0.9)  # lognormal delay of the minutes-late events

    def __post_init__(self) -> None:
        k = len(ARCHETYPES)
        if len(self.mix) != k or len(self.prepaid_share) != k or sum(self.mix) <= 0 or min(self.mix) < 0:
            raise ValueError("mix and prepaid_share need one non-negative share per archetype")
        if len(self.recharge_every) != len(self.recharge_share) or (
            self.lapser_recharge_share is not None and len(self.lapser_recharge_share) != len(self.recharge_every)
        ):
            raise ValueError("recharge shares need one share per cadence")
        if len(self.weekday_factor) != 7 or len(self.hour_weights) != 24:
            raise ValueError("weekday_factor needs 7 factors, hour_weights 24 weights")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_days") and isinstance(v, tuple) and not 0 <= v[0] <= v[1]:
                raise ValueError(f"{f.name}: need 0 <= lo <= hi, got {v}")
            if f.name.endswith("_share") and isinstance(v, float) and not 0.0 <= v <= 1.0:
                raise ValueError(f"{f.name}: a share in [0, 1], got {v}")
        if not 0.0 <= self.late_breaks[0] <= self.late_breaks[1] <= self.late_breaks[2] <= 1.0:
            raise ValueError("late_breaks must be increasing cumulative shares")

    @property
    def mix_dict(self) -> dict[str, float]:
        return dict(zip(ARCHETYPES, self.mix, strict=True))

    @classmethod
    def random(cls, seed: int) -> Profile:
        """A population drawn from plausible ranges, deterministic per ``seed``.

        Uses a generator of its own (``default_rng([seed, 0x5052])``): the simulation's streams are
        untouched, so the same seed gives the same call graph draws, only with other parameters.
        """
        g = np.random.default_rng([seed, 0x5052])
        u = lambda lo, hi: float(g.uniform(lo, hi))  # noqa: E731

        def days(lo: tuple[int, int], hi: tuple[int, int]) -> tuple[int, int]:
            a = int(g.integers(lo[0], lo[1] + 1))
            return a, a + int(g.integers(hi[0], hi[1] + 1))

        loyal = u(0.6, 0.88)
        rest = 0.01 + g.dirichlet([3.0, 1.5, 2.0, 1.5, 2.0]) * (0.95 - loyal)  # every archetype >= 1%
        shares = g.dirichlet([2.0, 1.5, 2.0, 2.5])
        weekend = u(0.75, 1.0)
        return cls(
            name=RANDOM,
            mix=(loyal, *(float(x) for x in rest)),
            prepaid_share=tuple(min(1.0, p * u(0.7, 1.3)) for p in (0.55, 0.5, 0.4, 0.75, 0.6)) + (1.0,),
            arpu_prepaid=(u(22.0, 55.0), u(0.4, 0.6)),
            arpu_postpaid=(u(65.0, 140.0), u(0.45, 0.65)),
            tenure=(u(400.0, 1500.0), u(0.7, 1.1)),
            calls_per_day=u(1.2, 3.6),
            sms_per_day=u(0.3, 1.6),
            usage_sigma=u(0.3, 0.6),
            daily_noise_shape=u(3.0, 10.0),
            weekday_factor=(1.0, 1.0, 1.0, 1.0, u(0.98, 1.08), u(weekend, 1.0), weekend),
            call_duration=(u(50.0, 110.0), u(0.8, 1.2)),
            unanswered_share=u(0.06, 0.2),
            community_size=(u(20.0, 80.0), u(0.7, 1.1)),
            contacts=(u(7.0, 20.0), u(0.45, 0.75)),
            own_contact_beta=(u(3.5, 6.5), u(3.5, 6.5)),
            competitor_pool_share=u(0.3, 0.7),
            external_cu_share=u(0.4, 0.7),
            holiday_share=u(0.04, 0.18),
            holiday_days=days((3, 8), (2, 6)),
            handset_share=u(0.02, 0.09),
            trend_sd_per_day=u(0.001, 0.004),
            rival_cu_share=u(0.35, 0.75),
            switcher_ramp_days=days((10, 25), (7, 20)),
            shadow_delay_days=(0, int(g.integers(2, 11))),
            switcher_hotline_share=u(0.6, 0.95),
            switcher_dual_sim_handset_share=u(0.2, 0.6),
            switcher_rival_calls=u(0.3, 1.0),
            migrant_quiet_days=days((14, 28), (7, 14)),
            migrant_level=u(0.01, 0.1),
            drifter_decay_days=days((15, 35), (10, 30)),
            drifter_shape=u(0.8, 1.8),
            lapser_decline_days=days((5, 12), (3, 10)),
            recharge_share=tuple(float(x) for x in shares),
            late_breaks=(u(0.75, 0.92), u(0.95, 0.985), u(0.99, 0.999)),
            on_time_mean_s=u(10.0, 40.0),
            late_minutes=(u(600.0, 2400.0), u(0.7, 1.1)),
        )


# Named populations (see the package docstring's table).
PROFILES: dict[str, Profile] = {
    "default": Profile(),
    # dense city network: more traffic, bigger circles, more rivals around, short cadences, late CDRs
    "urban": Profile(
        name="urban",
        mix=_mix(
            loyal=0.74, switcher=0.10, silent_porter=0.05, seasonal_migrant=0.02, drifter=0.04, prepaid_lapser=0.05
        ),
        prepaid_share=(0.45, 0.4, 0.3, 0.7, 0.5, 1.0),
        arpu_prepaid=(48.0, 0.5),
        arpu_postpaid=(120.0, 0.55),
        calls_per_day=3.3,
        sms_per_day=1.4,
        weekday_factor=(1.0, 1.0, 1.0, 1.0, 1.06, 0.95, 0.88),
        community_size=(70.0, 0.9),
        contacts=(20.0, 0.6),
        own_contact_beta=(4.0, 5.0),
        competitor_pool_share=0.65,
        holiday_share=0.14,
        holiday_days=(3, 7),
        handset_share=0.08,
        switcher_ramp_days=(14, 35),
        switcher_rival_calls=0.9,
        recharge_share=(0.45, 0.25, 0.2, 0.1),
        late_breaks=(0.76, 0.93, 0.99),
        late_minutes=(1800.0, 1.0),
    ),
    # sparse rural network: less traffic, small circles, monthly recharges, long absences,
    # prepaid lapsers who recharge monthly (few recharges before they lapse)
    "rural": Profile(
        name="rural",
        mix=_mix(
            loyal=0.78, switcher=0.03, silent_porter=0.02, seasonal_migrant=0.08, drifter=0.03, prepaid_lapser=0.06
        ),
        prepaid_share=(0.7, 0.65, 0.55, 0.85, 0.75, 1.0),
        arpu_prepaid=(28.0, 0.45),
        arpu_postpaid=(70.0, 0.5),
        tenure=(1400.0, 0.8),
        calls_per_day=1.4,
        sms_per_day=0.45,
        weekday_factor=(1.0, 1.0, 1.0, 1.0, 1.0, 0.96, 0.93),
        community_size=(25.0, 0.8),
        contacts=(8.0, 0.55),
        own_contact_beta=(6.5, 3.5),
        holiday_share=0.08,
        holiday_days=(8, 15),
        holiday_level=0.03,
        migrant_quiet_days=(28, 42),
        migrant_level=0.02,
        lapser_decline_days=(14, 24),
        lapser_recharge_share=(0.0, 0.0, 0.15, 0.85),
        recharge_share=(0.05, 0.1, 0.25, 0.6),
        late_breaks=(0.88, 0.975, 0.998),
    ),
    # high churn: more churners of every kind, and their signals come fast
    "churny": Profile(
        name="churny",
        mix=_mix(
            loyal=0.62, switcher=0.12, silent_porter=0.06, seasonal_migrant=0.04, drifter=0.08, prepaid_lapser=0.08
        ),
        trend_sd_per_day=0.003,
        switcher_ramp_days=(8, 20),
        shadow_delay_days=(0, 3),
        switcher_hotline_share=0.75,
        drifter_decay_days=(12, 28),
        drifter_shape=1.0,
        lapser_decline_days=(5, 10),
        recharge_share=(0.25, 0.2, 0.3, 0.25),
    ),
}
PROFILE_NAMES = (*PROFILES, RANDOM)


def resolve_profile(profile: Profile | str | None, seed: int) -> Profile:
    """``None`` -> ``Profile()``; a name from ``PROFILE_NAMES`` (``random`` draws from ``seed``); a ``Profile`` as is."""
    if profile is None:
        return PROFILES["default"]
    if isinstance(profile, Profile):
        return profile
    if profile == RANDOM:
        return Profile.random(seed)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILE_NAMES)}")
    return PROFILES[profile]


__all__ = ["ARCHETYPES", "DEFAULT_MIX", "PROFILES", "PROFILE_NAMES", "RANDOM", "Profile", "resolve_profile"]
