"""Feed outages (``void_fraction``): days on which the feed lost (nearly) every call and SMS of the
population are void, not a population falling silent. Every scenario runs on the vectorised engine
and the reference engine, which must emit exactly the same alarms."""

from __future__ import annotations

import random

from stream.engine import Engine, ReferenceEngine

from .gen import DAY, OWN, T0, daily_life, num, profile, recharge, sms
from .helpers import CLOCK, drive, phases, quiet_config, signal_names

SUBS = [num(OWN, 1 + i) for i in range(5)]
A = SUBS[0]
CIRCLES = [[num(OWN, 100 + 10 * i + j) for j in range(6)] for i in range(5)]
D0 = quiet_config().day_of(T0)
# five subscribers of 6 calls and SMS a day (20 calls, 10 SMS), and 20 recharges a day by four of
# them (not prepaid: no lapse of their own): a population once the minimums are 10 and 20
POP = {"void_min_events": 10, "void_min_recharges": 20}


def population(ndays: int, outage: range = range(0), extra=()):
    """The five subscribers' lives over ``ndays`` with ``extra`` events; every event of the days
    of ``outage`` lost (calls, SMS and recharges)."""
    ev = list(extra)
    for i, m in enumerate(SUBS):
        ev += daily_life(m, 0, ndays, random.Random(i), CIRCLES[i], per_day=6, skip_days=set(outage))
    ev += [recharge(m, T0 + d * DAY + (9 + k) * 3600, 5) for d in range(ndays) for m in SUBS[1:] for k in range(5)]
    return [e for e in ev if not (e["type"] == "recharge" and (e["ts"] - T0) // DAY in outage)]


def run(events, cfg):
    out = []
    for cls in (Engine, ReferenceEngine):
        out.append(drive(cls(cfg, clock=lambda: CLOCK), events, batch=7))
    assert out[0] == out[1]
    return out[0]


def days_of(alarms, m, signal):
    cfg = quiet_config()
    return [cfg.day_of(a["event_time"]) - D0 for a in alarms if a["msisdn"] == m and signal in signal_names(a)]


def test_an_outage_of_the_whole_feed_is_not_silence():
    # eight days without a single call or SMS from anyone, then the feed resumes
    ev = population(60, outage=range(40, 48))
    assert run(ev, quiet_config(**POP)) == []
    # without the rule (or in a population too small to tell), every subscriber fell silent
    for cfg in (quiet_config(void_fraction=0.0, **POP), quiet_config()):
        alarms = run(ev, cfg)
        assert {a["msisdn"] for a in alarms if "silence" in signal_names(a)} == set(SUBS)


def test_one_subscriber_silent_while_the_others_call_is_still_silence():
    ev = population(60)
    ev = [e for e in ev if not (e["msisdn"] == A and 40 <= (e["ts"] - T0) // DAY < 48)]
    alarms = run(ev, quiet_config(**POP))
    assert {a["msisdn"] for a in alarms} == {A}
    assert days_of(alarms, A, "silence") and phases(alarms, A)[0] == "warning"


def _weekly(recharge_days):
    return [profile(A, T0, plan="prepaid", arpu=30)] + [recharge(A, T0 + d * DAY + 100, 50) for d in recharge_days]


def test_a_recharge_due_in_the_outage_may_have_been_lost_there():
    # weekly recharges; the one of day 42 falls in the outage (days 41-43) and is lost with it
    ev = population(60, outage=range(41, 44), extra=_weekly(range(0, 60, 7)))
    assert run(ev, quiet_config(**POP)) == []
    # without the rule: overdue 7 + 2.5 days after day 35's recharge, until day 49's
    alarms = run(ev, quiet_config(void_fraction=0.0, **POP))
    assert days_of(alarms, A, "recharge_lapse") == [45]


def test_a_subscriber_overdue_before_the_outage_is_still_overdue():
    # the last recharge on day 28: overdue from the decision of day 38, before the outage of 41-43
    ev = population(60, outage=range(41, 44), extra=_weekly(range(0, 29, 7)))
    alarms = run(ev, quiet_config(**POP))
    assert days_of(alarms, A, "recharge_lapse")[:1] == [38]
    assert "recovered" not in phases(alarms, A)


def test_a_recharge_due_well_after_the_outage_is_still_judged():
    # monthly: the recharge of day 30 observed, the next due on day 60, long after the outage (days
    # 41-43): the outage does not restart its clock, the lapse comes when it would without the outage
    prof = [profile(A, T0, plan="prepaid", arpu=30)]
    rc = [recharge(A, T0 + d * DAY + 100, 50) for d in (0, 30)]
    ev = population(80, outage=range(41, 44), extra=prof + rc)
    clean = population(80, extra=prof + rc)
    lapse = days_of(run(ev, quiet_config(**POP)), A, "recharge_lapse")
    assert lapse[:1] == days_of(run(clean, quiet_config(**POP)), A, "recharge_lapse")[:1] == [70]


def test_a_recharge_made_after_the_outage_keeps_its_own_time():
    # a single top-up of 5 on an ARPU of 30: a 5-day prior cadence, overdue max(1.5 x 5, 5 + 7) =
    # 12 days after it. Made at 20:00 on day 44, just after the outage (days 41-43), its next one is
    # expected within the prior's margin of the outage, but the clock stays at the recharge (an
    # outage never brings a lapse earlier): overdue from 20:00 on day 56, the decision of day 57
    # (no lapse before its first recharge: recharge_prior_unseen off)
    prof = [profile(A, T0, plan="prepaid", arpu=30), recharge(A, T0 + 44 * DAY + 20 * 3600, 5)]
    ev = population(70, outage=range(41, 44), extra=prof)
    cfg = quiet_config(recharge_prior_unseen=False, **POP)
    assert days_of(run(ev, cfg), A, "recharge_lapse")[:1] == [57]


def test_the_worker_reports_each_void_day_once(caplog):
    """The service's share: a gauge of the void days the latest decision read, and one warning per
    void day naming its date (not one per decision)."""
    import logging

    from stream.service.churn import ChurnService
    from stream.settings import Settings

    svc = ChurnService(Settings.from_env({"CHURNWATCH_STORE": "memory://"}), quiet_config(**POP))
    drive(svc.engine, population(50, outage=range(40, 43)), batch=50)
    gauge = svc.metrics.registry.get_sample_value
    with caplog.at_level(logging.WARNING, logger="stream.service.churn"):
        svc._report_void(D0 + 44)
        svc._report_void(D0 + 45)
    assert gauge("churnwatch_void_dates") == 3
    warned = [r.getMessage() for r in caplog.records if "is void" in r.getMessage()]
    cfg = svc.engine.config
    assert len(warned) == 3
    assert all(cfg.date_of_day(D0 + d) in w for d, w in zip(range(40, 43), warned, strict=True))
    assert [cfg.date_of_day(d) for d in svc._void] == [cfg.date_of_day(D0 + d) for d in range(40, 43)]  # (/healthz)
    svc._report_void(D0 + 20)  # a decision whose window holds no void day
    assert gauge("churnwatch_void_dates") == 0 and svc._void == []


def test_an_outage_of_the_voice_feed_alone_is_void_too():
    # calls lost for eight days while the SMS kept flowing: A, who never sends or gets an SMS, was
    # not silent; the days are void (left out whole)
    ev = [
        e
        for e in population(70)
        if not (e["type"] == "call" and 40 <= (e["ts"] - T0) // DAY < 48)
        and not (e["type"] == "sms" and e["msisdn"] == A)
    ]
    assert run(ev, quiet_config(**POP)) == []
    without = run(ev, quiet_config(void_fraction=0.0, **POP))
    assert {a["msisdn"] for a in without} == {A} and days_of(without, A, "silence")


def test_a_lapse_during_an_outage_of_the_voice_feed_alone_is_still_a_lapse():
    # the last recharge on day 35, weekly: overdue from the decision of day 45. The voice feed is
    # lost on days 41-43 (void days) while the recharges kept coming: none was lost, the clock stays
    ev = [
        e
        for e in population(60, extra=_weekly(range(0, 36, 7)))
        if not (e["type"] == "call" and 41 <= (e["ts"] - T0) // DAY < 44)
    ]
    assert days_of(run(ev, quiet_config(**POP)), A, "recharge_lapse")[:1] == [45]


def test_a_day_of_ten_times_the_usual_sms_does_not_void_the_week_after():
    # New Year's greetings: 25 more SMS each on day 30 (135 in all against 10): the days after it
    # are normal days, not a tenth of it (the standard is the median of the 7 days before, not the most)
    cfg = quiet_config(**POP)
    greet = [sms(m, T0 + 30 * DAY + 10 * 3600 + k * 60, CIRCLES[i][0]) for i, m in enumerate(SUBS) for k in range(25)]
    for cls in (Engine, ReferenceEngine):
        eng = cls(cfg, clock=lambda: CLOCK)
        drive(eng, population(45, extra=greet), batch=50)
        assert [eng.void_days(D0 + d) for d in (32, 38, 44)] == [[], [], []], cls.__name__
