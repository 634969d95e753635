"""The handset (IMEI) index: the evidence it gives whatever the order of two numbers' events, its
bounds, its table entries, its expiry; the stage's wire formats (stream/service/handsets.py)."""

from __future__ import annotations

import random

import orjson
import pytest

from stream.engine import Engine
from stream.engine.handsets import DROP, LATEST, SWITCHED, UNSWITCH, USE, HandsetIndex, Op

from .helpers import quiet_config
from .test_signals import A, B, hand_down

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
    # the stage gets the same as ops: the engine sends UNSWITCH for the old handset
    st = HandsetIndex(dual_sim_days=30)
    st.apply([Op(USE, H1, A, 10, SWITCHED | LATEST), Op(USE, H2, A, 12, SWITCHED | LATEST), Op(UNSWITCH, H1, A)])
    assert st.switches == ix.switches and st.numbers == ix.numbers
    st.apply([Op(DROP, H1, A)])
    assert H1 not in st.numbers
    with pytest.raises(ValueError):
        st.apply([(9, H1, A, 1, 0)])


def test_entries_round_trip_and_expire():
    ix = HandsetIndex(dual_sim_days=30)
    ix.use(H1, A, 10)
    ix.use(H1, B, 20, SWITCHED | LATEST)
    ix.use(H2, A, 30)
    back = HandsetIndex(dual_sim_days=30)
    for h in (H1, H2):
        back.load(h, orjson.loads(orjson.dumps(ix.entry(h))))  # as the table stores it (string keys)
    assert back.numbers == ix.numbers and back.switches == ix.switches
    assert back.entry(999) is None
    assert back.expire(15) == [H1]  # A's use of H1 (day 10) expires; B's stays
    assert back.numbers[H1] == {B: 20} and back.switches[H1] == {B: 20}
    assert back.expire(31) == [H1, H2] and len(back) == 0


def test_the_engines_ops_replayed_through_a_stage_find_the_engines_evidence():
    """Two engines, each holding one of two numbers that hand a handset down (hand_down: A's old
    handset reaches B): neither finds the evidence alone; their ops, replayed in any interleaving
    through one stage index, give exactly the evidence one engine with both numbers finds."""
    events = sorted(hand_down(), key=lambda e: e["ts"])
    cfg = quiet_config()

    def feed(eng, evs):
        eng.route_handsets = True
        ops = []
        for i in range(0, len(evs), 50):
            eng.apply(eng.decode([orjson.dumps(e) for e in evs[i : i + 50]])[0])
            ops.append(eng.take_handset_ops())
        return ops

    one = Engine(cfg)
    feed(one, events)
    want = (int(one._a["dual_day"][one.rows_of([A])[0]]), int(one._a["dual_n"][one.rows_of([A])[0]]))
    assert want[1] > 0  # the single engine found it
    ea, eb = Engine(cfg), Engine(cfg)
    ops_a = feed(ea, [e for e in events if e["msisdn"] == A])
    ops_b = feed(eb, [e for e in events if e["msisdn"] == B])
    assert int(ea._a["dual_n"][ea.rows_of([A])[0]]) == 0  # alone, A's engine never sees B's switch
    rng = random.Random(7)
    for _ in range(20):  # interleavings that keep each engine's order (one producer per IMEI partition)
        a, b = list(ops_a), list(ops_b)
        merged = [(a if rng.random() < 0.5 and a or not b else b).pop(0) for _ in range(len(a) + len(b))]
        stage = HandsetIndex(cfg.dual_sim_days)
        ev = [x for ops in merged for x in stage.apply(ops)]
        assert {m for m, _ in ev} == {A}
        assert max(d for _, d in ev) == want[0]
