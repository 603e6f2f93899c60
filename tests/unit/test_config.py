"""tuneloop.config.from_mapping: the one border where a mapping parameter becomes a typed config."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tuneloop.config import ConfigError, changed_fields, describe, from_mapping, job_key_fields, setting


@dataclass(frozen=True)
class Retry:
    attempts: int = setting(3, help="tries in total", job_key=False)

    def __post_init__(self):
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) or self.attempts < 1:
            raise ValueError(f"attempts={self.attempts!r} must be an integer >= 1")


@dataclass(frozen=True)
class Demo:
    n_epochs: int | str = setting("auto", help="epochs or 'auto'")
    lr: float = setting(1.0, help="learning rate multiplier")
    rank: int = setting(4, help="adapter rank")
    verbose: bool = setting(False, help="log more", job_key=False)
    budget: float | None = setting(None, help="most to spend", job_key=False)
    modules: tuple[str, ...] = setting(("q",), help="modules")
    retry: Retry = setting(default_factory=Retry, help="retries", job_key=False)

    def __post_init__(self):
        if self.n_epochs != "auto" and (not isinstance(self.n_epochs, int) or isinstance(self.n_epochs, bool)):
            raise ValueError(f"n_epochs={self.n_epochs!r} must be 'auto' or an integer")
        if not isinstance(self.rank, int) or isinstance(self.rank, bool):
            raise ValueError(f"rank={self.rank!r} must be an integer")


def test_whole_floats_from_kfp_become_ints_and_ints_become_floats():
    cfg = from_mapping(Demo, {"n_epochs": 3.0, "rank": 8.0, "lr": 2, "verbose": "true", "modules": ["a", "b"]})
    assert cfg.n_epochs == 3 and type(cfg.n_epochs) is int
    assert cfg.rank == 8 and type(cfg.rank) is int
    assert cfg.lr == 2.0 and type(cfg.lr) is float
    assert cfg.verbose is True
    assert cfg.modules == ("a", "b")
    assert from_mapping(Demo, {"n_epochs": "auto"}).n_epochs == "auto"


def test_a_fractional_number_for_an_int_field_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"hyperparameters\.rank=3\.5 must be an integer"):
        from_mapping(Demo, {"rank": 3.5})
    with pytest.raises(ConfigError, match=r"n_epochs=2\.5"):
        from_mapping(Demo, {"n_epochs": 2.5})


def test_unknown_keys_list_the_valid_ones_and_suggest_the_closest():
    with pytest.raises(ConfigError) as err:
        from_mapping(Demo, {"n_epoch": 3}, owner="the demo provider")
    msg = str(err.value)
    assert "unknown key 'n_epoch' (did you mean 'n_epochs'?)" in msg
    assert "the demo provider" in msg and "'lr'" in msg and "'rank'" in msg


def test_nested_configs_are_built_from_nested_mappings():
    cfg = from_mapping(Demo, {"retry": {"attempts": 5.0}}, what="eval_options")
    assert cfg.retry == Retry(5)
    with pytest.raises(ConfigError, match=r"eval_options\.retry: unknown key 'atempts' \(did you mean 'attempts'\?\)"):
        from_mapping(Demo, {"retry": {"atempts": 5}}, what="eval_options")
    with pytest.raises(ConfigError, match=r"eval_options\.retry\.attempts=0"):
        from_mapping(Demo, {"retry": {"attempts": 0}}, what="eval_options")


def test_not_a_mapping_is_refused():
    with pytest.raises(ConfigError, match="hyperparameters must be an object"):
        from_mapping(Demo, [1, 2])
    assert from_mapping(Demo, None) == Demo()


def test_job_key_fields_leave_out_how_the_run_goes():
    cfg = from_mapping(Demo, {"n_epochs": 3, "budget": 10, "verbose": True})
    keyed = job_key_fields(cfg)
    assert keyed == {"n_epochs": 3, "lr": 1.0, "rank": 4, "modules": ["q"]}
    assert job_key_fields(from_mapping(Demo, {"n_epochs": 3.0, "budget": 99})) == keyed


def test_describe_lists_help_and_job_key():
    rows = {r["name"]: r for r in describe(Demo)}
    assert rows["lr"]["help"] == "learning rate multiplier" and rows["lr"]["job_key"] is True
    assert rows["budget"]["job_key"] is False
    assert rows["retry"]["default"] == {"attempts": 3}


def test_changed_fields_round_trip_to_the_same_config():
    cfg = from_mapping(Demo, {"n_epochs": 3.0, "budget": 5, "retry": {"attempts": 4}})
    changed = changed_fields(cfg)
    assert changed == {"n_epochs": 3, "budget": 5.0, "retry": {"attempts": 4}}
    assert from_mapping(Demo, changed) == cfg
    assert changed_fields(Demo()) == {}  # nothing to pass on, and no null for KFP to refuse
