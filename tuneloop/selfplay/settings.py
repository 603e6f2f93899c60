"""The self-play run's settings: parsed once, by the first task, into frozen dataclasses.

``selfplay-training`` takes the common knobs as parameters and the rest as one ``settings`` mapping
of sections; :func:`parse_settings` builds :class:`SelfplaySettings` from both with
:func:`tuneloop.config.from_mapping` (unknown keys fail with the valid ones and a close match, KFP's
3.0 becomes 3 for an int field, 3.5 is refused). The first task then hands every later task one
:class:`RunConfig` as a JSON *string*: a string crosses KFP unchanged (a dict's numbers would become
floats again), so later stages rebuild exactly the values the first task checked.

===============  ==========================================  =====================================
section          dataclass                                   e.g.
===============  ==========================================  =====================================
``thresholds``   :class:`~promotion.PromotionThresholds`     ``{"min_games": 10}`` (bars: params)
``combine``      :class:`~combine.CombineConfig`             ``{"truncated_weight": 0.5}``
``gauntlet``     :class:`GauntletSettings`                   ``{"min_games": 40, "wave": 8}``
``curriculum``   :class:`~curriculum.CurriculumSettings`     ``{"stall_elo": 30, "min_share": 0.1}``
``momentum``     :class:`~curriculum.MomentumSettings`       ``{"min_games": 500, "max_games": 8000}``
``validator``    :class:`~exports.ValidatorLimits`           ``{"max_total_bytes": 268435456}``
===============  ==========================================  =====================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from tuneloop.config import ConfigError, from_mapping, setting, to_mapping
from tuneloop.selfplay.combine import CombineConfig
from tuneloop.selfplay.curriculum import CurriculumSettings, MomentumSettings, RunPlan
from tuneloop.selfplay.exports import ValidatorLimits
from tuneloop.selfplay.promotion import PromotionThresholds


@dataclass(frozen=True)
class GauntletSettings:
    """How the gauntlet plays (``settings.gauntlet``); games and simulations are pipeline parameters."""

    min_games: int = setting(20, help="games a pairing always plays before it may stop early")
    wave: int = setting(10, help="games played together; early stopping is checked between waves")
    heuristic_uct_c: float = setting(2.0, help="UCT constant of the heuristic opponent (rollout MCTS)")
    sprt_delta: float = setting(0.05, help="half-width of the SPRT indifference zone around each bar")
    sprt_alpha: float = setting(0.05, help="SPRT false-positive rate")
    sprt_beta: float = setting(0.05, help="SPRT false-negative rate")
    opening_plies: int = setting(2, help="random opening moves shared by seat-swapped game pairs")
    max_moves: int | None = setting(None, help="decision limit per game (a draw when reached); None = the game's")

    def __post_init__(self) -> None:
        if self.min_games < 1 or self.wave < 1:
            raise ValueError(f"min_games ({self.min_games}) and wave ({self.wave}) must be >= 1")
        if self.opening_plies < 0:
            raise ValueError(f"opening_plies: {self.opening_plies} must be >= 0")
        if not 0 < self.sprt_delta < 0.5:
            raise ValueError(f"sprt_delta: {self.sprt_delta} must lie in (0, 0.5)")
        if not (0 < self.sprt_alpha < 0.5 and 0 < self.sprt_beta < 0.5):
            raise ValueError(f"sprt_alpha ({self.sprt_alpha}) and sprt_beta ({self.sprt_beta}) must lie in (0, 0.5)")
        if self.max_moves is not None and self.max_moves < 1:
            raise ValueError(f"max_moves: {self.max_moves} must be >= 1 or None")


@dataclass(frozen=True)
class SelfplaySettings:
    """Every self-play setting that is not a pipeline parameter of its own, by section."""

    thresholds: PromotionThresholds = setting(default_factory=PromotionThresholds, help="promotion bars")
    combine: CombineConfig = setting(default_factory=CombineConfig, help="how exports are merged and weighed")
    gauntlet: GauntletSettings = setting(default_factory=GauntletSettings, help="how the gauntlet plays")
    curriculum: CurriculumSettings = setting(
        default_factory=CurriculumSettings, help="rebalancing of the board configs' weights"
    )
    momentum: MomentumSettings = setting(default_factory=MomentumSettings, help="the game budget's Elo momentum")
    validator: ValidatorLimits = setting(default_factory=ValidatorLimits, help="bounds of the export validator")

    def __post_init__(self) -> None:
        for f in fields(self):
            want = _SECTION_TYPES[f.name]
            if not isinstance(getattr(self, f.name), want):
                raise ValueError(
                    f"{f.name}={getattr(self, f.name)!r} must be an object of {want.__name__} settings, e.g. {{}}"
                )


_SECTION_TYPES = {
    "thresholds": PromotionThresholds,
    "combine": CombineConfig,
    "gauntlet": GauntletSettings,
    "curriculum": CurriculumSettings,
    "momentum": MomentumSettings,
    "validator": ValidatorLimits,
}

# Settings that are pipeline parameters of their own: given in ``settings`` too, they would disagree.
PARAMETER_OWNED = {
    ("thresholds", "min_vs_random"): "min_vs_random",
    ("thresholds", "min_vs_heuristic"): "min_vs_heuristic",
    ("thresholds", "min_vs_best"): "min_vs_best",
    ("combine", "freshness_half_life"): "freshness_half_life",
    ("combine", "board_config"): "board_config / board_configs",
}


def parse_settings(settings: Mapping[str, Any] | None, *, parameters: Mapping[tuple[str, str], Any]) -> SelfplaySettings:
    """:class:`SelfplaySettings` from the ``settings`` parameter and the parameters that own some fields.

    Args:
        settings: the ``settings`` pipeline parameter (sections of settings); None/{} = defaults.
        parameters: ``{(section, field): value}`` from the run's own parameters (the bars, the half-life).

    Raises:
        ConfigError: not a mapping, an unknown section or key (valid ones and a close match), a bad
            value, or a field that is a pipeline parameter of its own.
    """
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise ConfigError(f"settings must be an object of sections, got {type(settings).__name__} {settings!r}")
    merged: dict[str, Any] = {}
    for section, value in settings.items():
        merged[section] = dict(value) if isinstance(value, Mapping) else value
    for (section, name), owner in PARAMETER_OWNED.items():
        if isinstance(merged.get(section), Mapping) and name in merged[section]:
            raise ConfigError(
                f"settings.{section}.{name}={merged[section][name]!r}: this is the pipeline parameter {owner}; "
                f"set it there and remove it from settings"
            )
    for (section, name), value in parameters.items():
        if isinstance(merged.setdefault(section, {}), Mapping):
            merged[section][name] = value  # a section that is not a mapping: from_mapping names it below
    return from_mapping(SelfplaySettings, merged, what="settings")


@dataclass(frozen=True)
class RunConfig:
    """What the first task hands every later task: the parsed settings and this run's plan."""

    model_name: str
    configs: tuple[str, ...]
    settings: SelfplaySettings
    plan: RunPlan

    @property
    def multi(self) -> bool:
        """Whether the run trains several board configs (names and summaries are then per config)."""
        return len(self.configs) > 1

    def to_json(self) -> str:
        return json.dumps(
            {
                "model_name": self.model_name,
                "configs": list(self.configs),
                "settings": to_mapping(self.settings),
                "plan": self.plan.to_dict(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        """Rebuild the record the first task wrote (its ``run_config`` output)."""
        try:
            d = json.loads(text)
            return cls(
                model_name=str(d["model_name"]),
                configs=tuple(d["configs"]),
                settings=from_mapping(SelfplaySettings, d["settings"], what="run_config.settings"),
                plan=RunPlan.from_dict(d["plan"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"run_config is not the record check-selfplay-config writes ({type(exc).__name__}: {exc}); "
                "wire that task's run_config output"
            ) from exc
