"""apply: event-time buckets, late/future rejects, idempotent replays, snapshots, fixed-size state."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from stream.contract import SIGNALS
from stream.engine import Engine, EngineConfig, ReferenceEngine
from stream.engine.core import SNAPSHOT_VERSION, initial_body
from stream.engine.sparse import pack_words, unpack

from .gen import DAY, T0, call, profile, recharge, sms
from .helpers import CLOCK, ENGINES, quiet_config

M = "8613800001234"
P = "8613900000001"
M2 = "8613800005678"


def feed(eng, events, **kw):
    b, rej = eng.decode([orjson.dumps(e) for e in events], **kw)
    return eng.apply(b), rej


@pytest.fixture(params=ENGINES, ids=lambda c: c.__name__)
def eng(request):
    return request.param(quiet_config(), clock=lambda: CLOCK)


def test_each_event_goes_into_the_bucket_of_its_own_day(eng):
    D0 = eng.day_of(T0)
    # arrival order: day 2, then a CDR of day 0 arriving late, then day 1
    feed(eng, [call(M, T0 + 2 * DAY, P, dur=100), call(M, T0 + 10, P, dur=40, out=False), sms(M, T0 + DAY + 5, P)])
    ring = eng.state_of(M)["ring"]
    assert sorted(ring) == [D0, D0 + 1, D0 + 2]
    # (calls_out, calls_in, sec_out, sec_in, sms_out, sms_in, ...)
    assert ring[D0][:6] == (0, 1, 0, 40, 0, 0)
    assert ring[D0 + 1][:6] == (0, 0, 0, 0, 1, 0)
    assert ring[D0 + 2][:6] == (1, 0, 100, 0, 0, 0)
    assert eng.watermark_s == T0 + 2 * DAY


@pytest.mark.parametrize(
    "offset_days, reason",
    [
        (-38, "late"),  # older than the 38-day ring behind the watermark: rejected
        (-37, None),  # the oldest day still in the ring
        (2.5, None),  # days ahead of the watermark is no reason to reject (a feed may catch up after an outage)
        (29.5, None),  # within max_watermark_jump_s (30 days)
        (30.5, "future"),  # implausibly far ahead of the watermark
    ],
)
def test_late_and_future_against_the_watermark(eng, offset_days, reason):
    feed(eng, [call(M, T0 + 40 * DAY, P)])
    ap, _ = feed(eng, [call(M, T0 + 40 * DAY + offset_days * DAY, P), call(M, T0 + 40 * DAY + 60, P)])
    got = [(r.index, r.reason) for r in ap.rejects]
    assert got == ([] if reason is None else [(0, reason)])
    assert len(ap.rows) == 1  # the valid event of the batch is applied anyway
    if reason:
        assert eng.counters["rejected_" + reason] == 1


def test_future_against_the_clock():
    eng = Engine(quiet_config(), clock=lambda: T0)
    ap, _ = feed(eng, [call(M, T0 + 3 * DAY, P), call(M, T0 + 100, P)])
    assert [(r.index, r.reason) for r in ap.rejects] == [(0, "future")]
    assert eng.watermark_s == T0 + 100


def test_future_events_do_not_move_the_watermark(eng):
    feed(eng, [call(M, T0, P)])
    # a far-future event first; the following ones are judged against the unchanged watermark
    ap, _ = feed(
        eng,
        [call(M, T0 + 90 * DAY, P), call(M, T0 + 29 * DAY, P), call(M, T0 + 58 * DAY, P), call(M, T0 + 90 * DAY, P)],
    )
    assert [r.reason for r in ap.rejects] == ["future", "future"]
    assert [r.index for r in ap.rejects] == [0, 3]
    assert eng.watermark_s == T0 + 58 * DAY


def test_replayed_offsets_are_skipped(eng):
    events = [call(M, T0 + i, P) for i in range(5)]
    feed(eng, events, src=np.zeros(5, int), offsets=np.arange(100, 105))
    before = eng.state_of(M)
    # a crash replays offsets 102..106: only 105 and 106 are new
    more = events[2:] + [call(M, T0 + 50, P), call(M, T0 + 60, P)]
    ap, _ = feed(eng, more, src=np.zeros(5, int), offsets=np.arange(102, 107))
    assert ap.skipped == 3
    assert eng.state_of(M)["ring"][eng.day_of(T0)][0] == before["ring"][eng.day_of(T0)][0] + 2
    # offsets are per source: offset 100 on the sms topic is new
    ap, _ = feed(eng, [sms(M, T0 + 70, P)], src=np.array([1]), offsets=np.array([100]))
    assert ap.skipped == 0
    assert eng.state_of(M)["hwm"] == [106, 100, -1, -1]
    assert eng.counters["skipped"] == 3


def test_apply_names_the_rows_it_created_and_the_event_of_each():
    """(The worker learns a new subscriber's partition from it.) A rejected event (``future``)
    creates nothing; a row freed by ``forget`` and reused is created again."""
    e = Engine(quiet_config(), clock=lambda: CLOCK)
    ap, _ = feed(e, [call(M, T0, P), call(M, T0 + 5, P), sms(M2, T0 + 9, P)])
    assert ap.created == ([e.row_of(M), e.row_of(M2)], [0, 2])
    ap, _ = feed(e, [call(M, T0 + 20, P), call("8613800009999", CLOCK + 30 * DAY, P)])  # a known one; a future one
    assert ap.created == ([], []) and ap.rejects[0].reason == "future"
    row = e.row_of(M2)
    e.forget([M2])
    ap, _ = feed(e, [call(M, T0 + 30, P), call("8613800004321", T0 + 31, P)])
    assert ap.created == ([row], [1]) and e.row_of("8613800004321") == row


def test_counters_are_cumulative(eng):
    feed(eng, [call(M, T0, P), sms(M, T0 + 1, P), recharge(M, T0 + 2), profile(M, T0 + 3)])
    b, rej = eng.decode([b"nope", orjson.dumps(call(M, T0 + 4, P))])
    eng.apply(b)
    assert eng.counters["applied_call"] == 2 and eng.counters["applied_sms"] == 1
    assert eng.counters["applied_recharge"] == 1 and eng.counters["applied_profile"] == 1
    assert eng.counters["rejected_invalid_json"] == 1


def test_ring_reuses_slots_of_old_days(eng):
    feed(eng, [call(M, T0, P)])
    for d in range(1, 40):
        feed(eng, [call(M, T0 + d * DAY, P)])
    ring = eng.state_of(M)["ring"]
    assert len(ring) == eng.config.ring_days
    assert min(ring) == eng.day_of(T0) + 39 - eng.config.ring_days + 1


def test_profile_latest_by_event_time_wins(eng):
    feed(eng, [profile(M, T0 + 100, plan="prepaid", arpu=10), profile(M, T0 + 50, plan="postpaid", arpu=99)])
    assert eng.state_of(M)["profile"][:3] == (1, -1, 1000)


def test_snapshot_round_trip_and_restore_elsewhere():
    eng = Engine(quiet_config(), clock=lambda: CLOCK)
    evs = [
        call(M, T0 + d * DAY + k, f"86139000000{k:02d}", imei="356000000000001", dur=10 + k)
        for d in range(20)
        for k in range(4)
    ]
    evs += [recharge(M, T0 + 5 * DAY, 20), profile(M, T0, plan="prepaid", arpu=50, key_group_member=True)]
    feed(eng, evs)
    snap = eng.snapshot(M)
    assert snap[0] == SNAPSHOT_VERSION == 7  # version byte (7: version 5's fields and a waiting dial, sparse)
    assert len(snap) <= 2048 + 2
    other = Engine(quiet_config(), clock=lambda: CLOCK)
    other.restore(M, snap)
    assert other.snapshot(M) == snap
    assert other.state_of(M) == eng.state_of(M)
    assert M in other and len(other) == 1 and other.row_of(M) is not None
    assert other.msisdns([other.row_of(M)]) == [M]
    # overwrite and forget
    other.restore(M, snap)
    assert len(other) == 1
    other.forget([M, "unknown"])
    assert M not in other and other.snapshot(M) is None and other.view(M) is None
    with pytest.raises(ValueError):
        other.restore(M, b"\x09" + snap[1:])


def test_reference_snapshot_round_trip():
    eng = ReferenceEngine(quiet_config(), clock=lambda: CLOCK)
    feed(eng, [call(M, T0 + k, P, imei="356000000000001") for k in range(3)])
    snap = eng.snapshot(M)
    other = ReferenceEngine(quiet_config(), clock=lambda: CLOCK)
    other.restore(M, snap)
    assert other.state_of(M) == eng.state_of(M) and other.snapshot(M) == snap


def test_state_is_fixed_size():
    eng = Engine(EngineConfig(), clock=lambda: CLOCK)
    assert eng.state_bytes_per_subscriber <= 2048
    words = (len(initial_body(eng.R)) + 7) // 8
    bound = 2 + (words + 7) // 8 + 8 * words  # the sparse snapshot at its largest: every word stored
    feed(eng, [call(M, T0, P)])
    n0 = len(eng.snapshot(M))
    feed(eng, [call(M, T0 + k, f"8613{k:09d}") for k in range(2000)])  # many distinct peers
    assert n0 < len(eng.snapshot(M)) <= bound
    assert len(eng.state_of(M)["circle"]) <= 16


def test_view_is_json_ready(eng):
    feed(eng, [call(M, T0 + d * DAY, P) for d in range(20)])
    v = eng.view(M)
    orjson.dumps(v)
    assert v["phase"] == "healthy" and v["value_tier"] in ("high", "mid", "low")
    assert [s["name"] for s in v["signals"]] == list(SIGNALS)  # every signal, in the contract's order
    assert len(v["days"]) == 14 and v["days"][-1]["calls_out"] == 1


def test_a_decision_names_the_rows_it_changed(eng):
    # the service persists exactly these rows after a decision: every row whose state changed
    feed(eng, [call(M, T0 + k * DAY, P) for k in range(20)] + [call(M2, T0 + k * DAY, P) for k in range(20)])
    D = eng.day_of(T0)
    for day in (D + 20, D + 22, D + 40, D + 41):  # active the day before; quiet; silent for weeks; again
        before = {m: eng.state_of(m) for m in (M, M2)}
        dec = eng.decide(day)
        changed = sorted(m for m in (M, M2) if eng.state_of(m) != before[m])
        assert sorted(eng.msisdns(dec.rows)) == changed, day
    assert eng.view(M)["phase"] == "churned"  # (the decisions did change something)


def test_older_snapshots_restore_with_initial_values_for_the_newer_fields():
    """Snapshots written before recovery hysteresis (version 1: no clear_day) or before the
    second-SIM join (version 2: no sh_* fields), before decisions in event time (version 3) or
    before the per-subscriber decided day (version 4) still restore, so a service upgraded over an
    existing changelog keeps its state; the fields they lack start at their initial values."""
    from stream.engine.core import NODAY

    eng = Engine(quiet_config(), clock=lambda: CLOCK)
    evs = [call(M, T0 + d * DAY + k, f"86139000000{k:02d}", dur=10 + k) for d in range(20) for k in range(4)]
    feed(eng, evs)
    v7_tail = 4 + 8 + 2  # dial_day, dial_ts, dial_n
    dense = unpack(eng.snapshot(M), 2, initial_body(eng.R))
    snap = bytes([5, eng.R]) + dense[:-v7_tail]  # version 5: the dense fields before the waiting dial
    other = Engine(quiet_config(), clock=lambda: CLOCK)
    other.restore(M, snap)
    assert other.state_of(M) == eng.state_of(M)
    # version 6: version 5's fields, sparse against their own initial values
    body = np.frombuffer(snap[2:] + bytes(-(len(snap) - 2) % 8), dtype=np.uint64).reshape(1, -1).copy()
    v6 = pack_words(body, np.array([[6, eng.R]], dtype=np.uint8), initial_body(eng.R, 6))[0]
    other = Engine(quiet_config(), clock=lambda: CLOCK)
    other.restore(M, v6)
    assert other.state_of(M) == eng.state_of(M) and other.snapshot(M) == eng.snapshot(M)
    v5_tail = 4  # dec_day
    v4_tail = v5_tail + 8 + 4 + 4 + 4 + 8 + 4  # rch_prev, imm_day, ep_day, dual_prev, sw_h, sw_d
    v3_tail = v4_tail + 8 + 4 + 4 + 2 + 2 + 4 + 8  # sh_peer, sh_first, sh_day, sh_mask, sh_j, sh_pub, sh_hash
    v4 = bytes([4]) + snap[1:-v5_tail]
    v3 = bytes([3]) + snap[1:-v4_tail]
    v2 = bytes([2]) + snap[1:-v3_tail]
    v1 = bytes([1]) + snap[1 : -v3_tail - 4]  # ... and without clear_day (i4)
    for old in (v1, v2, v3, v4):
        other = Engine(quiet_config(), clock=lambda: CLOCK)
        other.restore(M, old)
        assert other.state_of(M)["ring"] == eng.state_of(M)["ring"]
        assert other.state_of(M)["life"][-1] == NODAY
        if old[0] < 3:
            assert other.state_of(M)["shadow"] == (0, NODAY, NODAY, 0, 0, NODAY, 0)
        assert other.state_of(M)["decisions"][-1] == NODAY  # dec_day: not decided yet
        if old[0] < 4:
            assert other.state_of(M)["decisions"] == (-math.inf, NODAY, NODAY, NODAY, 0, NODAY, NODAY)
        with pytest.raises(ValueError):
            other.restore(M, old[:1] + snap[1:])  # an old header on a newer body
    with pytest.raises(ValueError):
        Engine(quiet_config(), clock=lambda: CLOCK).restore(M, bytes([8]) + snap[1:])


def test_late_is_judged_per_subscriber_not_against_other_subscribers(eng):
    # a backlog read partition by partition: M is 42 days ahead of M2 when M2's history arrives
    feed(eng, [call(M, T0 + 42 * DAY, P)])
    ap, _ = feed(eng, [call(M2, T0 + 60, P), sms(M2, T0 + 3 * DAY, P), call(M2, T0 + 40 * DAY, P)])
    assert ap.rejects == []
    D0 = eng.day_of(T0)
    assert sorted(eng.state_of(M2)["ring"]) == [D0, D0 + 3, D0 + 40]
    # M2's own ring now reaches day 41: day 3 is 38 days older, beyond what the ring holds; day 4 fits
    feed(eng, [call(M2, T0 + 41 * DAY, P)])
    ap, _ = feed(eng, [sms(M2, T0 + 3 * DAY + 60, P), sms(M2, T0 + 4 * DAY, P)])
    assert [(r.index, r.reason) for r in ap.rejects] == [(0, "late")]


def test_late_within_one_batch_follows_the_subscribers_own_earlier_events(eng):
    # the day-45 event comes first in the batch, so the day-2 event of the same subscriber is late
    # (2 <= 45 - 38), while another subscriber's day-2 event beside it is not
    ap, _ = feed(
        eng,
        [
            call(M, T0 + 45 * DAY, P),
            call(M, T0 + 2 * DAY, P),
            call(M2, T0 + 2 * DAY, P),
            recharge(M, T0 + 10 * DAY + 5, 1000),
        ],
    )
    assert [(r.index, r.reason) for r in ap.rejects] == [(1, "late")]
    assert eng.counters["rejected_late"] == 1


def test_a_snapshot_written_with_another_ring_size_restores_day_by_day():
    """ring_days went from 36 to 38 (room for the next days' events before a day is decided): a
    worker upgraded over an existing changelog restores every day of the old ring into its slot."""
    old = Engine(quiet_config(ring_days=36), clock=lambda: CLOCK)
    evs = [call(M, T0 + d * DAY + k, f"86139000000{k:02d}", dur=10 + k) for d in range(50) for k in range(3)]
    feed(old, evs)
    new = Engine(quiet_config(), clock=lambda: CLOCK)
    assert new.R == 38
    new.restore(M, old.snapshot(M))
    assert new.state_of(M)["ring"] == old.state_of(M)["ring"] and len(new.state_of(M)["ring"]) == 36
    assert {k: v for k, v in new.state_of(M).items() if k != "ring"} == {
        k: v for k, v in old.state_of(M).items() if k != "ring"
    }
    small = Engine(quiet_config(ring_days=36), clock=lambda: CLOCK)  # back to a smaller ring: the newest days
    small.restore(M, new.snapshot(M))
    assert small.state_of(M)["ring"] == old.state_of(M)["ring"]


@pytest.mark.parametrize("cls", ENGINES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("batch", [1, 2, 100])
def test_without_a_clock_a_gap_in_the_feed_is_taken_and_a_corrupt_time_is_not(cls, batch):
    """The backtest has no wall clock: an event more than max_future_s (2 days) past the file's
    watermark is future. A feed that resumes after a 4-day outage is a jump of event time, which
    the live worker (judging by the wall clock) takes: GAP_CONFIRM events in a row past the bound,
    close together, are the jump (the ones before the last are rejected). A lone corrupt time, or
    fewer in a row, stays rejected and never moves the watermark. The same for any batch size."""
    from stream.engine.core import GAP_CONFIRM
    from stream.engine.step import Replay

    before = [call(M if i % 2 else M2, T0 + i * 3600, P) for i in range(0, 4 * 24, 2)]  # days 0-3
    corrupt = [call(M, T0 + 40 * DAY, P)] + [call(M2, T0 + 4 * DAY - 1800 + j, P) for j in range(3)]
    corrupt += [call(M, T0 + 60 * DAY, P)] * (GAP_CONFIRM - 1) + [call(M2, T0 + 4 * DAY - 60, P)]
    after = [call(M if i % 2 else M2, T0 + 8 * DAY + i * 3600, P) for i in range(0, 3 * 24, 2)]  # days 8-10
    events = before + corrupt + after
    eng = cls(quiet_config(), clock=None)
    replay = Replay(eng)
    rejected = []
    for s in range(0, len(events), batch):
        part = events[s : s + batch]
        for res in replay.feed(eng.decode([orjson.dumps(e) for e in part])[0]):
            rejected += [(part[r.index]["ts"], r.reason) for r in res.rejects]
    bad = [(T0 + 40 * DAY, "future")] + [(T0 + 60 * DAY, "future")] * (GAP_CONFIRM - 1)
    assert rejected == bad + [(e["ts"], "future") for e in after[: GAP_CONFIRM - 1]]
    assert eng.watermark_s == after[-1]["ts"]
    assert eng.counters["rejected_future"] == len(rejected)
