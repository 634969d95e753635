"""The handset (IMEI) index: the evidence it gives whatever the order of two numbers' events, its
bounds, its table entries, its expiry; the stage's wire formats (stream/service/handsets.py)."""

from __future__ import annotations

import random

import orjson
import pytest

from stream.engine import Engine, ReferenceEngine
from stream.engine.handsets import LATEST, SWITCHED, HandsetIndex, Switch

from .gen import OWN, num
from .helpers import quiet_config, signal_names
from .test_signals import C2, D0, A, B, hand_down, life

H1, H2 = 356000000000001, 356000000000002


def test_a_switch_into_a_handset_is_evidence_for_its_recent_users():
    ix = HandsetIndex(dual_sim_days=30)
    assert ix.use(H1, A, 10) == []
    assert ix.use(H1, B, 20, SWITCHED | LATEST) == [(A, 20)]  # A used it 10 days before
    # a user whose last use is older than the window gives none
    ix2 = HandsetIndex(dual_sim_days=30)
    ix2.use(H1, A, 10)
    assert ix2.use(H1, B, 40, SWITCHED | LATEST) == []
    # a use that is not a switch (the number's own handset from the start) gives none
    ix3 = HandsetIndex(dual_sim_days=30)
    ix3.use(H1, A, 10)
    assert ix3.use(H1, B, 20) == []


def test_the_evidence_does_not_depend_on_which_number_arrives_first():
    ix = HandsetIndex(dual_sim_days=30)
    assert ix.use(H1, B, 20, SWITCHED | LATEST) == []
    assert ix.use(H1, A, 10) == [(A, 20)]  # A's use read after B's switch: the same evidence, day 20
    assert ix.switches[H1] == {B: 20}


def test_the_index_keeps_the_latest_numbers_and_refuses_older_ones():
    ix = HandsetIndex(dual_sim_days=30, size=2)
    ix.use(H1, "1", 5)
    ix.use(H1, "2", 6)
    assert ix.use(H1, "3", 7) == [] and set(ix.numbers[H1]) == {"2", "3"}  # the oldest use went
    assert ix.use(H1, "4", 4) is None and set(ix.numbers[H1]) == {"2", "3"}  # older than all: refused


def test_a_numbers_latest_switch_only():
    ix = HandsetIndex(dual_sim_days=30)
    ix.use(H1, A, 10, SWITCHED | LATEST)
    ix.use(H2, A, 12, SWITCHED | LATEST, old_switch=H1)
    assert H1 not in ix.switches and ix.switches[H2] == {A: 12}
    # another engine meets the same switches as broadcast (Switch: imei, msisdn, day, flags, old)
    other = HandsetIndex(dual_sim_days=30)
    for sw in (Switch(H1, A, 10, SWITCHED | LATEST), Switch(H2, A, 12, SWITCHED | LATEST, H1)):
        assert other.remote_switch(*sw) == []
    assert other.switches == ix.switches and other.numbers == {}  # A's uses stay with A's engine
    # a switch that is not the number's latest gives evidence but is not kept
    other.use(H1, B, 9)
    assert other.remote_switch(H1, A, 11, SWITCHED) == [(B, 11)] and H1 not in other.switches


def test_a_remote_switch_meets_this_engines_numbers_in_either_order():
    before = HandsetIndex(dual_sim_days=30)
    before.use(H1, B, 10)  # B used the handset, then A (another engine's number) switched into it
    assert before.remote_switch(H1, A, 20, SWITCHED | LATEST) == [(B, 20)]
    after = HandsetIndex(dual_sim_days=30)
    after.remote_switch(H1, A, 20, SWITCHED | LATEST)  # ... read before B's use
    assert after.use(H1, B, 10) == [(B, 20)]
    # outside the window: nothing either way
    late = HandsetIndex(dual_sim_days=30)
    late.use(H1, B, 10)
    assert late.remote_switch(H1, A, 45, SWITCHED | LATEST) == []


@pytest.mark.parametrize("cls", [Engine, ReferenceEngine])
def test_engines_that_broadcast_their_switches_find_one_engines_evidence(cls):
    """Two engines, each holding one of two numbers that hand a handset down (hand_down: A's old
    handset reaches B): neither finds the evidence alone; with each one's switches met by the
    other, in any interleaving that keeps each engine's order, A gets exactly the evidence one
    engine holding both numbers gives."""
    events = sorted(hand_down(), key=lambda e: e["ts"])
    cfg = quiet_config()

    def chunks(eng, evs):
        eng.route_handsets = True
        out = []
        for i in range(0, len(evs), 50):
            eng.apply(eng.decode([orjson.dumps(e) for e in evs[i : i + 50]])[0])
            out.append(eng.take_handset_ops())
        return out

    one = cls(cfg)
    chunks(one, events)
    want = _dual(one)
    assert want[1] > 0  # the single engine found it
    assert _dual(cls(cfg)) is None
    rng = random.Random(7)
    for _ in range(10):
        ea, eb = cls(cfg), cls(cfg)
        seq = [(ea, c) for c in chunks(ea, [e for e in events if e["msisdn"] == A])]
        seq += [(eb, c) for c in chunks(eb, [e for e in events if e["msisdn"] == B])]
        assert _dual(ea)[1] == 0  # alone, A's engine never sees B's switch
        # B's switches reach A's engine at some point after they were made (A's own: none)
        b_sw = [sw for eng, c in seq if eng is eb for sw in c]
        assert b_sw and all(sw.msisdn == B for sw in b_sw)
        cut = rng.randrange(len(b_sw) + 1)
        ea.apply_switches(b_sw[:cut])
        ea.apply_switches(b_sw[cut:])
        ea.apply_switches(b_sw)  # met twice (a replay): nothing changes
        assert _dual(ea) == want


def _dual(eng):
    """A's dual-SIM evidence state (evidence day, count), None if A is unknown."""
    return _dual_of(eng, A)


def _dual_of(eng, m):
    if m not in eng:
        return None
    if isinstance(eng, Engine):
        r = eng.rows_of([m])[0]
        return int(eng._a["dual_day"][r]), int(eng._a["dual_n"][r])
    sub = eng._subs[m]
    return sub.dual_day, sub.dual_n


@pytest.mark.parametrize("cls", [Engine, ReferenceEngine])
def test_a_number_first_seen_after_its_evidence_is_decided_from_its_first_day_on(cls):
    """C's first use of handset 1 comes after B's switch into it (day 31): C's evidence is dated
    day 31, but C is decided only from the day after its first day. A day decided again (a
    restart decides its last decided day again) finds the same candidates whether or not C's
    first events were read before it."""
    c = num(OWN, 3)
    cfg = quiet_config()
    eng = cls(cfg)
    events = sorted(hand_down() + life(c, 36, 4, C2, imei=str(H1), seed=5), key=lambda e: e["ts"])
    eng.apply(eng.decode([orjson.dumps(e) for e in events])[0])
    rc = int(eng.rows_of([c])[0]) if isinstance(eng, Engine) else eng._subs[c].row
    assert _dual_of(eng, c)[0] == D0 + 31  # the evidence: B's switch
    first = D0 + 36
    for d in range(D0 + 32, first + 1):
        assert rc not in eng.decide_candidates(d).tolist(), d  # C's evidence waits for its first day
    assert rc in eng.decide_candidates(first + 1).tolist()
    (alarm,) = [x for x in eng.decide(first + 1).alarms if x["msisdn"] == c]
    assert signal_names(alarm) == ["dual_sim"]


def test_the_index_forgets_switches_too_old_to_give_live_evidence():
    ix = HandsetIndex(dual_sim_days=30)
    ix.use(H1, B, 20, SWITCHED | LATEST)
    ix.remote_switch(H2, A, 25, SWITCHED | LATEST)
    assert ix.expire(21) == 1 and ix.switches == {H2: {A: 25}}  # B's (day 20) went, A's stays
    assert ix.expire(26) == 1 and ix.switches == {}
    ix.use(H1, "5", 40)  # a later user of the handset: no switch left, no evidence (it would be stale)
    assert ix.numbers[H1] == {B: 20, "5": 40}


@pytest.mark.parametrize("cls", [Engine, ReferenceEngine])
def test_engines_forget_switches_once_no_decision_can_read_their_evidence(cls):
    """B's switch into A's old handset (day 31) gives A evidence; once the days decided are past
    its window (dual_sim_days), the switch is forgotten: memory no longer grows with every
    number that ever switched. The alarms are the same as without forgetting (A's, day 32)."""
    cfg = quiet_config()
    eng = cls(cfg)
    eng.apply(eng.decode([orjson.dumps(e) for e in sorted(hand_down(), key=lambda e: e["ts"])])[0])

    def switches():
        return eng._handsets.switches if isinstance(eng, Engine) else eng._switches

    assert switches() == {H1: {B: D0 + 31}, H2: {A: D0 + 30}}
    alarms = [x for d in range(D0 + 32, D0 + 61) for x in eng.decide(d).alarms]
    assert [(x["msisdn"], eng.day_of(x["event_time"])) for x in alarms][:1] == [(A, D0 + 32)]
    assert switches() == {H1: {B: D0 + 31}}  # day 60 still reads evidence from day 31 on
    eng.decide(D0 + 61)
    assert switches() == {}
