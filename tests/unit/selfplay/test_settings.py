"""The self-play settings: parsed once into frozen dataclasses, handed on as an exact JSON record."""

from __future__ import annotations

import dataclasses

import pytest

from tuneloop.config import ConfigError
from tuneloop.selfplay.curriculum import RunPlan
from tuneloop.selfplay.settings import RunConfig, SelfplaySettings, parse_settings

BARS = {
    ("thresholds", "min_vs_random"): 0.7,
    ("thresholds", "min_vs_heuristic"): 0.55,
    ("thresholds", "min_vs_best"): 0.4,
    ("combine", "freshness_half_life"): 3.0,
}


def test_whole_floats_become_ints_and_every_section_is_typed():
    s = parse_settings(
        {
            "gauntlet": {"min_games": 40.0, "wave": 8.0},
            "validator": {"max_members": 48.0, "max_total_bytes": 268435456.0},
            "momentum": {"min_games": 500.0, "max_games": 8000.0},
            "curriculum": {"history": 30.0, "stall_elo": 10},
            "thresholds": {"min_games": 12.0},
        },
        parameters=BARS,
    )
    assert isinstance(s, SelfplaySettings)
    ints = [s.gauntlet.min_games, s.gauntlet.wave, s.validator.max_members, s.validator.max_total_bytes,
            s.momentum.min_games, s.momentum.max_games, s.curriculum.history, s.thresholds.min_games]
    assert ints == [40, 8, 48, 268435456, 500, 8000, 30, 12] and all(type(v) is int for v in ints)
    assert s.curriculum.stall_elo == 10.0 and type(s.curriculum.stall_elo) is float
    assert s.thresholds.targets == (0.7, 0.55, 0.4) and s.combine.freshness_half_life == 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.gauntlet.wave = 3


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"gauntlet": {"min_games": 3.5}}, "settings.gauntlet.min_games=3.5 must be an integer"),
        ({"gauntlett": {}}, "unknown key 'gauntlett' (did you mean 'gauntlet'?)"),
        ({"momentum": {"speedup": 2}}, "unknown key 'speedup' (did you mean 'speed_up'?)"),
        ({"momentum": {"slow_down": 1.5}}, "slow_down: 1.5 must lie in (0, 1]"),
        ({"validator": {"max_duplicate_fraction": 2}}, "max_duplicate_fraction=2.0 must lie in [0, 1]"),
        ({"thresholds": {"min_vs_random": 0.9}}, "this is the pipeline parameter min_vs_random"),
        ({"combine": {"board_config": "hex5_2p"}}, "pipeline parameter board_config / board_configs"),
        ({"curriculum": 5}, "curriculum=5 must be an object of CurriculumSettings settings"),
        ([1, 2], "settings must be an object of sections"),
    ],
)
def test_a_bad_setting_is_named_with_the_fix(settings, message):
    with pytest.raises(ConfigError) as err:
        parse_settings(settings, parameters=BARS)
    assert message in str(err.value)


def test_the_run_config_crosses_as_a_string_with_its_types():
    s = parse_settings({"gauntlet": {"min_games": 4.0}, "momentum": {"max_games": 90.0}}, parameters=BARS)
    plan = RunPlan({"hex5_2p": 0.25, "connect_four_2p": 0.75}, 60, {"hex5_2p": 0.5, "connect_four_2p": 0.5}, 40,
                   "registry", "why")
    rc = RunConfig("agents", ("connect_four_2p", "hex5_2p"), s, plan)
    back = RunConfig.from_json(rc.to_json())
    assert back == rc and back.multi
    assert type(back.settings.gauntlet.min_games) is int and type(back.plan.total_games) is int
    with pytest.raises(ConfigError, match="run_config is not the record check-selfplay-config writes"):
        RunConfig.from_json('{"model_name": "x"}')
