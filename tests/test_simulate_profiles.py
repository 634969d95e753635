"""Simulator profiles: the default is the old generator bit for bit, the named ones differ as declared."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json

import numpy as np
import orjson
import pytest

from stream.engine import EngineConfig
from stream.engine.decode import decode
from stream.tools import simulate
from stream.tools.simulate import DAY_S, PROFILE_NAMES, PROFILES, Profile, generate, resolve_profile

from .test_simulate import _check_event

N, DAYS, SEED = 300, 42, 7

# sha256 of generate(200, 30, 5) (events, then the truth as sorted JSON; see _digest), computed with
# the generator of commit 44d1f4d, before the constants became a Profile: the default profile must
# reproduce it byte for byte. (Only a change of numpy's random streams may ever move it.)
PRE_PROFILE_DIGEST_200_30_5 = "b5ebb857efdd88de9f636773bd20d09740aa309b8f3a861a783136ba544ada04"


def _digest(n: int, days: int, seed: int, **kw) -> str:
    it, truth = generate(n, days, seed, **kw)
    h = hashlib.sha256()
    for ln in it:
        h.update(ln + b"\n")
    h.update(json.dumps(truth, sort_keys=True).encode())
    return h.hexdigest()


def _notes(r: dict) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in r["notes"].split(";") if kv)


@pytest.fixture(scope="module")
def sims():
    out = {}
    for name in PROFILE_NAMES:
        recs, truth = generate(N, DAYS, SEED, fmt="records", malformed_rate=0, profile=name)
        recs = list(recs)
        out[name] = (recs, [orjson.loads(v) for _, _, v in recs], truth)
    return out


def test_default_profile_is_the_pre_profile_generator():
    assert Profile() == PROFILES["default"] == resolve_profile(None, 5) == resolve_profile("default", 5)
    assert _digest(200, 30, 5) == PRE_PROFILE_DIGEST_200_30_5
    assert _digest(200, 30, 5, profile="default") == PRE_PROFILE_DIGEST_200_30_5
    assert _digest(200, 30, 5, profile=Profile()) == PRE_PROFILE_DIGEST_200_30_5
    assert Profile().mix_dict == simulate.DEFAULT_MIX


def test_profile_is_frozen_and_validated():
    p = Profile()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.calls_per_day = 3.0  # type: ignore[misc]
    assert hash(p) == hash(Profile())
    assert dataclasses.replace(p, calls_per_day=3.0) != p
    with pytest.raises(ValueError):
        Profile(mix=(1.0, 0.0))
    with pytest.raises(ValueError):
        Profile(drifter_decay_days=(30, 10))
    with pytest.raises(ValueError):
        Profile(holiday_share=1.5)
    with pytest.raises(ValueError):
        Profile(recharge_share=(0.5, 0.5))
    with pytest.raises(ValueError, match="unknown profile"):
        generate(10, 3, 1, profile="suburban")
    assert set(PROFILE_NAMES) >= {"default", "urban", "rural", "churny", "random"}


def test_every_profile_generates_valid_events(sims):
    cfg = EngineConfig()
    for name, (recs, events, truth) in sims.items():
        batch, rejects = decode([v for _, _, v in recs], keys=[k for _, k, _ in recs], config=cfg)
        assert not rejects, (name, rejects[:3])
        assert len(batch) == len(recs)
        for e in events:
            _check_event(e)
        assert len(truth) == N and list(truth[0]) == list(simulate.TRUTH_FIELDS)
        assert {e["msisdn"] for e in events if e["type"] == "profile"} == {r["msisdn"] for r in truth}
        start = simulate.simulation_start_ts()
        per_last = collections.defaultdict(int)
        for e in events:
            per_last[e["msisdn"]] = max(per_last[e["msisdn"]], e["ts"])
        for r in truth:  # churners are gone from their churn day, in every profile
            churner = r["archetype"] in simulate.CHURN_ARCHETYPES
            assert (r["churn_day"] != "") == churner, name
            if churner:
                assert r["churn_ts"] == start + r["churn_day"] * DAY_S
                assert per_last[r["msisdn"]] < r["churn_ts"], (name, r["archetype"])


def test_archetype_mix_follows_the_profile(sims):
    for name, (_, _, truth) in sims.items():
        prof = resolve_profile(name, SEED)
        counts = collections.Counter(r["archetype"] for r in truth)
        for a, share in prof.mix_dict.items():
            assert abs(counts[a] - share / sum(prof.mix) * N) <= 1, (name, a)
    churners = {
        name: sum(r["churn_day"] != "" for r in truth) / N for name, (_, _, truth) in sims.items() if name != "random"
    }
    assert churners["churny"] > 1.5 * churners["default"]
    assert churners["rural"] < churners["default"] < churners["urban"] < churners["churny"]
    mixes = {name: collections.Counter(r["archetype"] for r in truth) for name, (_, _, truth) in sims.items()}
    assert mixes["urban"]["switcher"] > mixes["default"]["switcher"] > mixes["rural"]["switcher"]
    assert (
        mixes["rural"]["seasonal_migrant"] > mixes["default"]["seasonal_migrant"] > mixes["urban"]["seasonal_migrant"]
    )


def test_traffic_rates_differ_as_declared(sims):
    per_sub_day = {
        name: sum(e["type"] in ("call", "sms") for e in events) / (N * DAYS) for name, (_, events, _) in sims.items()
    }
    assert per_sub_day["urban"] > 1.3 * per_sub_day["default"]
    assert per_sub_day["rural"] < 0.7 * per_sub_day["default"]
    assert 4 <= per_sub_day["default"] <= 15
    circles = {}
    for name in ("urban", "default", "rural"):
        peers = collections.defaultdict(set)
        for e in sims[name][1]:
            if e["type"] in ("call", "sms") and e["direction"] == "out":
                peers[e["msisdn"]].add(e["peer"])
        circles[name] = np.median([len(p) for p in peers.values()])
    assert circles["urban"] > circles["default"] > circles["rural"]


def test_recharge_cadences_differ_as_declared(sims):
    def recharges_per_prepaid(name):
        _, events, truth = sims[name]
        prepaid = {r["msisdn"] for r in truth if r["plan"] == "prepaid" and r["archetype"] == "loyal"}
        n = sum(e["type"] == "recharge" and e["msisdn"] in prepaid for e in events)
        return n / len(prepaid)

    def mean_gap(name):  # mean over subscribers of their median days between recharges
        _, events, truth = sims[name]
        prepaid = {r["msisdn"] for r in truth if r["plan"] == "prepaid" and r["archetype"] == "loyal"}
        days = collections.defaultdict(list)
        for e in events:
            if e["type"] == "recharge" and e["msisdn"] in prepaid:
                days[e["msisdn"]].append(e["ts"] // DAY_S)
        return np.mean([np.median(np.diff(sorted(d))) for d in days.values() if len(d) >= 2])

    assert recharges_per_prepaid("urban") > 1.15 * recharges_per_prepaid("default")
    assert recharges_per_prepaid("rural") < 0.85 * recharges_per_prepaid("default")
    assert mean_gap("urban") + 1 < mean_gap("default") < mean_gap("rural") - 2
    for name in ("default", "urban", "rural", "churny"):
        every = collections.Counter(int(_notes(r)["recharge_every"]) for r in sims[name][2] if r["plan"] == "prepaid")
        assert set(every) <= set(PROFILES[name].recharge_every)
    rural_lapsers = [int(_notes(r)["recharge_every"]) for r in sims["rural"][2] if r["archetype"] == "prepaid_lapser"]
    assert np.mean(np.array(rural_lapsers) == 30) > 0.6  # few recharges before they lapse


def test_lengths_differ_as_declared(sims):
    def lengths(name, key, archetype=None):
        out = []
        for r in sims[name][2]:
            notes = _notes(r)
            if key in notes and (archetype is None or r["archetype"] == archetype):
                if key == "holiday":
                    h0, h1 = map(int, notes[key].split("-"))
                    out.append(h1 - h0 + 1)
                else:
                    out.append(r["churn_day"] - int(notes[key]))
        assert out, (name, key)
        return out

    for name in ("default", "urban", "rural"):
        lo, hi = PROFILES[name].holiday_days
        assert all(lo <= x <= hi for x in lengths(name, "holiday")), name
    assert min(lengths("rural", "holiday")) > max(lengths("urban", "holiday"))
    # churny: shorter switcher ramps and faster drifters (ramp/decay start -> churn day)
    assert np.mean(lengths("churny", "ramp_start")) < np.mean(lengths("default", "ramp_start"))
    assert np.mean(lengths("churny", "decay_from")) < np.mean(lengths("default", "decay_from"))


def test_lateness_differs_as_declared(sims):
    def late_share(name):
        ts = np.array([e["ts"] for e in sims[name][1]])
        return float(((np.maximum.accumulate(ts) - ts) > 3600).mean())

    assert late_share("urban") > 1.3 * late_share("default")
    assert late_share("rural") < late_share("default")


def test_random_profile_is_deterministic_per_seed():
    assert Profile.random(3) == Profile.random(3)
    assert Profile.random(3) != Profile.random(4)
    for s in range(200):  # every draw is a valid profile (validated in __post_init__) with each archetype
        p = Profile.random(s)
        assert abs(sum(p.mix) - 1.0) < 1e-9 and min(p.mix) >= 0.01
    assert _digest(150, 25, 3, profile="random") == _digest(150, 25, 3, profile="random")
    assert _digest(150, 25, 3, profile="random") != _digest(150, 25, 4, profile="random")
    # its parameters come from a generator of its own: the population's numbers (the first draws
    # of the simulation's generator) are those of the default profile for the same seed
    _, t_default = generate(150, 25, 3)
    _, t_random = generate(150, 25, 3, profile="random")
    assert [r["msisdn"] for r in t_default] == [r["msisdn"] for r in t_random]


def test_mix_overrides_the_profile_mix():
    _, truth = generate(100, 20, 1, profile="urban", mix={"loyal": 0.5, "drifter": 0.5})
    assert collections.Counter(r["archetype"] for r in truth) == {"loyal": 50, "drifter": 50}


def test_cli_profile_option(tmp_path, capsys):
    from stream.cli import main

    out, truth = tmp_path / "ev.ndjson", tmp_path / "truth.csv"
    args = ["simulate", "--subscribers", "60", "--days", "8", "--seed", "2", "--out", str(out), "--truth", str(truth)]
    assert main([*args, "--profile", "rural"]) == 0
    assert "profile rural" in capsys.readouterr().err
    rows = simulate.read_truth(truth)
    assert len(rows) == 60
    lines, t = generate(60, 8, 2, profile="rural")
    assert out.read_bytes() == b"".join(ln + b"\n" for ln in lines)
    assert [r["msisdn"] for r in rows] == [r["msisdn"] for r in t]
    with pytest.raises(SystemExit):
        main([*args, "--profile", "suburban"])
