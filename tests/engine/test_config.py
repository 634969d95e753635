"""EngineConfig: defaults, validation (the service must fail at start-up on a bad file), day arithmetic."""

from __future__ import annotations

import pytest

from stream.engine import ConfigError, EngineConfig


def test_defaults_are_valid_and_documented():
    c = EngineConfig()
    assert c.timezone == "Asia/Shanghai" and c.utc_offset_s == 8 * 3600
    assert c.ring_days >= 35
    assert set(c.competitor_hotlines) == {"10010", "10000"}
    assert "10086" in c.own_hotlines and "10086" not in c.competitor_hotlines
    doc = EngineConfig.__module__
    import importlib

    text = importlib.import_module(doc).__doc__
    for f in ("drop_threshold", "erosion_threshold", "silence_days", "cooldown_days", "warn_score", "holidays"):
        assert f in text


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"ring_days": 20}, "ring_days"),  # ring must cover 35 days
        ({"drop_threshold": 1.5}, "drop_threshold"),  # shares are in (0, 1]
        ({"drop_threshold": 0.9, "deep_drop_threshold": 0.8}, "deep_drop_threshold"),  # deep below normal
        ({"warn_score": 0.7, "alarm_score": 0.6}, "alarm_score"),  # alarm below warning
        ({"timezone": "Mars/Olympus"}, "timezone"),  # unknown zone
        ({"silence_days": 0}, "silence_days"),  # must be >= 1
        ({"silence_days": 10, "churned_silence_days": 9}, "churned_silence_days"),
        ({"own_hotlines": ("10010",)}, "own_hotlines"),  # ours and a competitor's at once
        ({"holidays": (("2025-02-10", "2025-02-01"),)}, "holidays"),  # ends before it starts
        ({"max_future_s": -1}, "max_future_s"),
        ({"cooldown_days": 1.5}, "cooldown_days"),  # integers stay integers
        ({"drop_threshold": True}, "drop_threshold"),  # a bool is not a number
        ({"recharge_min_count": 1}, "recharge_min_count"),
    ],
)
def test_bad_values_name_the_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        EngineConfig.from_mapping(kw)


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="drop_treshold"):
        EngineConfig.from_mapping({"drop_treshold": 0.4})


def test_from_toml(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text(
        'drop_threshold = 0.4\nsilence_days = 5\nholidays = [["2026-02-10", "2026-02-20"]]\n'
        'own_hotlines = ["10086"]\n[competitor_hotlines]\n"10010" = "cu"\n'
    )
    c = EngineConfig.from_toml(p)
    assert c.drop_threshold == 0.4 and c.silence_days == 5
    assert c.competitor_hotlines == {"10010": "cu"}
    assert len(c.holiday_days) == 11
    # a [engine] table works too
    p.write_text("[engine]\nwarn_score = 0.3\n")
    assert EngineConfig.from_toml(p).warn_score == 0.3
    p.write_text("warn_score = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        EngineConfig.from_toml(p)
    with pytest.raises(ConfigError, match="cannot read"):
        EngineConfig.from_toml(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "ts, tz, day",
    [
        (0, "UTC", 0),  # epoch
        (86399, "UTC", 0),  # last second of day 0
        (86400, "UTC", 1),  # day boundary
        (16 * 3600 - 1, "Asia/Shanghai", 0),  # 23:59:59 in Shanghai on 1970-01-01
        (16 * 3600, "Asia/Shanghai", 1),  # Shanghai midnight = 16:00 UTC
        (-1, "UTC", -1),  # floor, not truncation
        (1_760_000_000, "Asia/Shanghai", 20370),  # 2025-10-09 16:53 +08
    ],
)
def test_day_of(ts, tz, day):
    c = EngineConfig(timezone=tz)
    assert c.day_of(ts) == day
    assert c.day_of(c.day_start_s(day)) == day and c.day_of(c.day_start_s(day) - 1) == day - 1
