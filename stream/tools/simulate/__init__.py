"""Synthetic operator with ground truth: ``churnwatch simulate --subscribers N --days D --seed S``.

The simulator builds a population of our ("own") subscribers with a consistent call graph, runs
it day by day (vectorised with numpy, deterministic for a seed) and emits input events in the
wire contract (``stream/contract.py``, ``schemas/``) in **arrival order**, together with a ground
truth of who churns and when.

Generator API (in-process, for tests, benchmarks and the demo)::

    events, truth = generate(n_subscribers, days, seed, start="2026-01-05", fmt="bytes",
                             malformed_rate=0.0005, late=True, mix=None, profile=None)

``truth`` is a list of dicts (the CSV rows below, computed up front); ``events`` is a lazy
iterator in arrival order. ``fmt`` chooses the items: ``"bytes"`` (one JSON line, no newline),
``"dict"`` (decoded events; malformed lines stay raw ``bytes`` so they can be told apart) or
``"records"`` (``(topic_kind, key, value)`` tuples ready for Kafka: ``topic_kind`` is one of
``"calls" "sms" "recharges" "profiles"``, ``key`` the msisdn as UTF-8 bytes; malformed lines go
to ``"calls"`` with the key of the event they were derived from). ``async produce_to_kafka``
sends such an iterator to the input topics. ``simulation_start_ts(start)`` gives the Unix time
of day 0.

Time: day ``d`` is the local calendar day ``start + d`` in UTC+8 (China, no DST); day 0 starts at
local midnight of ``start``. ``ts`` is Unix seconds (UTC).

Ground truth CSV (``--truth FILE.csv``, header line, one row per subscriber)::

    msisdn,archetype,churn_day,churn_ts,stop_day,plan,arpu,tenure,second_sim,notes

- ``archetype``: loyal | switcher | silent_porter | seasonal_migrant | drifter | prepaid_lapser
- ``churn_day``: day index (0-based from the start) on which the subscriber is gone (no own
  activity from that day on); empty for non-churners (loyal, seasonal_migrant).
- ``churn_ts``: Unix seconds of local midnight starting ``churn_day``; empty when no churn.
- ``stop_day``: for silent porters the day traffic stops abruptly (= churn_day); else empty.
- ``plan``: prepaid | postpaid; ``arpu``: monthly ARPU (yuan); ``tenure``: days since activation
  at day 0.
- ``second_sim``: switchers' competitor shadow number (cu/ct) that takes over their traffic;
  empty otherwise.
- ``notes``: ``;``-separated ``key=value`` facts, e.g. ``holiday=40-46``, ``handset_change=22``,
  ``handdown_to=86...@25`` (old handset, i.e. its IMEI, reappears with another of our numbers
  from that day), ``handdown_from=...``, ``dual_own_sim=86...`` (shares a handset with another
  of our numbers all along), ``ramp_start=50``, ``shadow_from=55``, ``hotline=61:10010``,
  ``rival=cu``, ``dual_sim_handset=55``, ``quiet=48-76``, ``decay_from=30``,
  ``last_recharge=60``, ``recharge_every=14``, ``rival_hotline=33:10000`` (a loyal customer
  who once dialled a rival's care line).

Archetypes and default mix (``DEFAULT_MIX``; counts are exact after rounding):

- **loyal 80%**: steady. 10% of them take a holiday (5-9 quiet days at ~5% of usual traffic,
  then back); 5% change handset (new IMEI from a day on), and a quarter of those hand the old
  handset to a close contact who is also ours (that contact's calls then carry the old IMEI);
  0.5% share one handset with another of our numbers from the start (a person with two of our
  SIMs: the IMEI-with-two-own-numbers pattern exists in the baseline, it is not churn); 0.5% dial
  a rival care line once (calling for a relative). Loyal customers' (and migrants') usage also
  drifts slowly: a factor exp(slope * day) with slope ~ N(0, 0.002) per day (about +-18% over
  90 days at one sd), so a mild decline alone is not churn.
- **switcher 6%**: over 3-6 weeks before the churn day: a ramp start, then a second SIM (a new
  cu/ct "shadow" number) appears; the shadow calls/texts the subscriber's close contacts (our
  contacts get "in" events with ``peer`` = the shadow) and the contacts' calls migrate to the
  shadow (their "out" events to the shadow, ``peer_operator`` = the rival); more calls to
  competitor peers; 90% dial the rival's care line (10010 for cu, 10000 for ct) once or twice;
  own traffic decays over the weeks and is gone at the churn day (the old number is cancelled);
  prepaid switchers stop recharging about a week after the shadow appears. 40% move the old SIM
  into a new dual-SIM handset with the rival SIM (new IMEI on our side at the shadow day); in a
  quarter of those (10% of switchers) the old handset goes to a close contact of ours, so the
  subscriber's old IMEI shows up with another of OUR numbers. We never see the rival SIM's IMEI
  (its CDRs are the rival's), so IMEI evidence is rare, as in reality. (Model: one IMEI per
  handset; an IMEI is seen with two of our numbers only for a shared handset or a hand-down.)
- **silent_porter 3%**: normal until the stop day, then nothing at all (number ported out;
  contacts still call the ported number, with ``peer_operator`` = the new operator).
- **seasonal_migrant 4%**: quiet for 3-5 weeks (~4% of usual traffic, away cell, recharges
  paused) somewhere after the baseline, then back to normal. Not churners.
- **drifter 3%**: usage decays slowly (30-60 days) to nothing; churn day where it hits ~0.
- **prepaid_lapser 4%** (all prepaid): recharges stop (``last_recharge``); usage stays normal
  for one usual interval while the balance lasts, then declines to nothing over 10-20 days (the
  missed recharge falls after the baseline); churn day (suspension) at the end.

Churn days (and the migrants' quiet windows) fall in the second half of the period, and no
precursor starts before day 35 (``BASELINE_DAYS``, shortened for short test periods), so the
engine has a clean baseline. Default period 90 days.

Call graph: communities with heavy-tailed sizes (lognormal, 5-400); each subscriber has a
heavy-tailed number of contacts (median ~12, up to 120): ~55% our own subscribers (85% within
the community; a few own-network numbers outside the population), the rest cu/ct numbers (half
from a community pool, so competitor numbers are shared) plus a few service numbers (10086,
banks, 12306). Edge weights are lognormal (sigma 1.2), so a few close contacts carry most
traffic. Own-to-own calls are one call with two CDRs (the caller's "out", the callee's "in",
same ts and duration). Rhythms: hour-of-day profile (quiet night, peaks late morning and
evening), weekends at ~85-90%, per-subscriber daily gamma noise. About 5-7 calls+SMS per active
subscriber per day (out + in). Prepaid subscribers recharge every 7/10/14/30 days (±1-2),
amounts follow ARPU. One profile per subscriber at the start (arrives first), ~2% get a profile
update (ARPU change) later.

Arrival order: 85% of events arrive within about a minute, 12% minutes to an hour late
(lognormal, median 20 min), 2.7% 1-12 h, 0.3% 12-30 h; the stream is ordered by arrival time
(a per-day sort plus a carry-over of the not-yet-arrived). Malformed lines (default 0.05% of
lines, ``--malformed-rate 0`` disables): truncated JSON, a missing required field, a bad type
(string duration / ts), a non-UTF-8 byte sequence; each is derived from a real event.

Profiles (``--profile NAME``, ``generate(profile=NAME | Profile)``): every behavioural constant
above (archetype mix, rates, recharge cadences and amounts, holiday/migration/decay/decline/ramp
lengths, care-line and handset shares, rhythms, lateness, call-graph sizes) is a field of the
frozen dataclass ``Profile`` (``profile.py``, one comment per field). ``default`` (= ``Profile()``,
the population described above and used for tuning) generates exactly what the simulator generated
before profiles existed, byte for byte for a seed. The others describe populations whose
parameters were never used for tuning, to report alarm quality out of sample; ``mix=`` still
overrides a profile's archetype mix.

============  ===================================================================================
profile       what it changes against ``default``
============  ===================================================================================
``default``   nothing: the tuning population (80/6/3/4/3/4% mix, 2.2 calls + 0.9 SMS out a day)
``urban``     more traffic (3.3 calls + 1.4 SMS), bigger communities (median 70) and circles
              (median 20 contacts, fewer of them ours), more switchers (10%) and porters (5%),
              fewer migrants (2%), less prepaid, higher ARPU, short cadences (45% weekly, 10%
              monthly), shorter switcher ramps (2-5 weeks) with more rival calls, shorter but more
              holidays, more handset changes, more lateness (76% on time, 1% over 12 h)
``rural``     less traffic (1.4 calls + 0.45 SMS), small circles (median 8, mostly ours), more
              prepaid and lower ARPU, mostly monthly recharges (60%; lapsers 85% monthly, so few
              recharges before they lapse), more lapsers (6%) and migrants (8%), fewer switchers
              (3%), longer holidays (8-15 d) and migrations (4-6 weeks), slower lapser decline,
              less lateness
``churny``    62% loyal: 12% switchers, 6% porters, 8% drifters, 8% lapsers; faster signals:
              switcher ramps 8-20 d with the shadow at once (0-3 d), fewer care-line calls (75%),
              drifters decay in 12-28 d (linearly), lapsers decline in 5-10 d; more usage drift
              among the loyal, somewhat shorter recharge cadences
``random``    every main parameter drawn per seed from a plausible range (``Profile.random``:
              loyal 60-88% and each other archetype >= 1%, rates, circles, cadences, lengths,
              lateness) with a generator of its own (``default_rng([seed, 0x5052])``), so the
              simulation's streams are untouched; deterministic per seed
============  ===================================================================================

The truth CSV has the same columns and meaning for every profile.

Modules: ``plan`` (the population plan: numbers, call graph, archetype timelines, ground truth),
``days`` (one day's events as columns), ``encode`` (JSON lines in arrival order, ``generate``,
the truth CSV), ``produce`` (to Kafka), ``profile`` (the ``Profile`` parameters and the named
profiles); this package holds the CLI and re-exports the API.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from .encode import TOPIC_KINDS, TRUTH_FIELDS, generate, read_truth, write_truth
from .plan import CHURN_ARCHETYPES, DAY_S, DEFAULT_START, simulation_start_ts
from .produce import _tee, produce_to_kafka
from .profile import ARCHETYPES, DEFAULT_MIX, PROFILE_NAMES, PROFILES, Profile, resolve_profile

__all__ = [
    "ARCHETYPES",
    "CHURN_ARCHETYPES",
    "DAY_S",
    "DEFAULT_MIX",
    "DEFAULT_START",
    "PROFILES",
    "PROFILE_NAMES",
    "Profile",
    "resolve_profile",
    "TRUTH_FIELDS",
    "TOPIC_KINDS",
    "generate",
    "simulation_start_ts",
    "write_truth",
    "read_truth",
    "produce_to_kafka",
    "add_arguments",
    "run",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subscribers", type=int, default=10_000, help="population size (default 10000)")
    p.add_argument("--days", type=int, default=90, help="simulated days (default 90)")
    p.add_argument("--seed", type=int, default=1, help="random seed (deterministic output)")
    p.add_argument("--start", default=DEFAULT_START, help=f"day 0 as a local (UTC+8) date, default {DEFAULT_START}")
    p.add_argument(
        "--out", help="write events as NDJSON to this file ('-' = stdout); with --kafka, a copy of what was sent"
    )
    p.add_argument("--truth", help="write the ground-truth CSV to this file")
    p.add_argument("--kafka", action="store_true", help="produce to the Kafka input topics (KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--rate", type=float, default=0.0, help="events per second with --kafka (0 = as fast as possible)")
    p.add_argument(
        "--malformed-rate", type=float, default=0.0005, help="share of malformed lines (default 0.0005, 0 disables)"
    )
    p.add_argument("--no-late", action="store_true", help="no arrival lateness (events in event-time order)")
    p.add_argument(
        "--profile",
        default="default",
        choices=PROFILE_NAMES,
        help="population profile (default 'default', the tuning population; 'random' draws one from --seed)",
    )


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.kafka and not args.truth:
        print("simulate: give --out FILE and/or --truth FILE, or --kafka", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    fmt = "records" if args.kafka else "bytes"
    events, truth = generate(
        args.subscribers,
        args.days,
        args.seed,
        start=args.start,
        fmt=fmt,
        malformed_rate=args.malformed_rate,
        late=not args.no_late,
        profile=args.profile,
    )
    if args.truth:
        write_truth(args.truth, truth)
    n = 0
    if args.kafka:
        from ...settings import Settings

        settings = Settings.from_env()
        tee = None
        if args.out:  # also keep a copy of exactly what was sent
            tee = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")
            events = _tee(events, tee)
        try:
            n = asyncio.run(produce_to_kafka(events, settings, rate=args.rate, progress=True))
        finally:
            if tee is not None and tee is not sys.stdout.buffer:
                tee.close()
    elif args.out:
        from ..progress import Progress

        f = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")
        try:
            with Progress(None, "events") as bar:
                chunk: list[bytes] = []
                for line in events:
                    chunk.append(line)
                    if len(chunk) >= 50_000:
                        f.write(b"\n".join(chunk) + b"\n")
                        n += len(chunk)
                        bar.update(len(chunk))
                        chunk.clear()
                if chunk:
                    f.write(b"\n".join(chunk) + b"\n")
                    n += len(chunk)
                    bar.update(len(chunk))
        finally:
            if f is not sys.stdout.buffer:
                f.close()
    churners = sum(1 for r in truth if r["churn_day"] != "")
    print(
        f"simulate: {len(truth)} subscribers, {args.days} days, profile {args.profile}, {n} events, {churners} churners, "
        f"{time.monotonic() - t0:.1f}s",
        file=sys.stderr,
    )
    return 0
