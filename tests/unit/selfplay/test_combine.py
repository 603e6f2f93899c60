"""Combination: freshness and quality weights, de-duplication, and the fall back to the latest export."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tuneloop.selfplay import npz, stages
from tuneloop.selfplay.combine import CombineConfig, CombineError, combine_exports
from tuneloop.selfplay.exports import load_npz, validate_file
from tuneloop.selfplay.selfplay import SelfPlayConfig, play


@pytest.fixture(scope="module")
def generations(tmp_path_factory):
    """Three real exports: generation 0 (seed 1), generation 1 (seed 2), generation 2 (seed 3)."""
    root = tmp_path_factory.mktemp("gens")
    paths = []
    for gen in range(3):
        ps = play(SelfPlayConfig("hex5_2p", games=3, simulations=30, seed=gen + 1, generation=gen))
        paths.append(str(npz.save_npz(root / f"gen{gen}.npz", ps)))
    return paths


def test_combined_set_holds_every_position_with_weights_halving_per_half_life(generations, tmp_path):
    report = combine_exports(generations, tmp_path / "set", CombineConfig(freshness_half_life=1.0))
    data = npz.open_dir(tmp_path / "set")
    sizes = [load_npz(p).num_positions for p in generations]
    assert data.num_positions == sum(sizes) == report["num_positions"]
    assert validate_file(tmp_path / "set").errors == []
    by_gen = {s["generation"]: s["freshness"] for s in report["sources"]}
    assert by_gen == {2: 1.0, 1: 0.5, 0: 0.25}
    # freshest first; relative weights follow the freshness, mean weight is 1
    w = data.sample_weights
    assert w.mean() == pytest.approx(1.0, rel=1e-5)
    n2, n1 = sizes[2], sizes[1]
    assert w[0] == pytest.approx(2 * w[n2], rel=1e-5) == pytest.approx(4 * w[n2 + n1], rel=1e-5)
    assert report["fallback"] is False


def test_a_game_exported_twice_is_kept_once(generations, tmp_path):
    report = combine_exports([generations[0], generations[1], generations[0]], tmp_path / "set")
    once = load_npz(generations[0]).num_positions + load_npz(generations[1]).num_positions
    assert report["num_positions"] == once
    assert report["duplicate_games_dropped"] == 3
    no_dedup = combine_exports(
        [generations[0], generations[0]], tmp_path / "set2", CombineConfig(dedup=False)
    )
    assert no_dedup["num_positions"] == 2 * load_npz(generations[0]).num_positions


def test_truncated_games_weigh_less(tmp_path):
    full = play(SelfPlayConfig("hex5_2p", games=2, simulations=20, seed=4))
    cut = play(SelfPlayConfig("hex5_2p", games=2, simulations=20, seed=5, max_moves=4))
    a = str(npz.save_npz(tmp_path / "full.npz", full))
    b = str(npz.save_npz(tmp_path / "cut.npz", cut))
    combine_exports([a, b], tmp_path / "set", CombineConfig(truncated_weight=0.25))
    data = npz.open_dir(tmp_path / "set")
    truncated = data.victory_types == npz.VICTORY_TYPES.index("truncated")
    assert truncated.sum() == cut.num_positions
    assert set(np.round(data.sample_weights[truncated] / data.sample_weights[~truncated][0], 5)) == {0.25}


def test_an_invalid_export_is_left_out_and_reported(generations, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    report = combine_exports([generations[0], str(bad)], tmp_path / "set")
    assert report["num_positions"] == load_npz(generations[0]).num_positions
    assert "not a readable .npz" in report["rejected"][str(bad)][0]


def test_an_export_of_another_board_config_is_skipped_and_every_valid_row_is_kept(generations, tmp_path):
    c4 = play(SelfPlayConfig("connect_four_2p", games=1, simulations=20, seed=1, generation=0))
    c4_path = str(npz.save_npz(tmp_path / "c4.npz", c4))
    report = stages.combine([*generations, c4_path], str(tmp_path / "set"))
    # no fallback to one file: the freshest export's board config is trained, the other is listed
    assert report["fallback"] is False and report["board_config"] == "hex5_2p"
    assert report["num_positions"] == sum(load_npz(p).num_positions for p in generations)
    assert "differs from 'hex5_2p', the freshest export's" in report["rejected"][c4_path][0]
    assert report["rejected_count"] == 1 and report["exports_given"] == 4
    # choosing a board config trains that one
    only_c4 = stages.combine([*generations, c4_path], str(tmp_path / "c4"), board_config="connect_four_2p")
    assert only_c4["num_positions"] == c4.num_positions and only_c4["fallback"] is False
    assert set(only_c4["rejected"]) == set(generations)


def test_the_fallback_is_used_only_when_combining_fails_and_names_the_failure(generations, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage" * 10)
    report = stages.combine(
        [*generations, str(bad)], str(tmp_path / "set"), config=CombineConfig(min_weight=10.0)
    )
    assert report["fallback"] is True
    assert "combining the 3 valid exports failed" in report["fallback_reason"]
    assert "every position was dropped" in report["fallback_reason"]
    assert report["fallback_source"] == generations[2]  # the freshest generation
    assert str(bad) in report["rejected"]  # the bad file is listed, and was not the cause
    data = npz.open_dir(tmp_path / "set")
    np.testing.assert_array_equal(data.game_ids, load_npz(generations[2]).game_ids)
    assert npz.read_dir_info(tmp_path / "set")["combine"]["fallback"] is True


def test_nothing_valid_is_an_error_that_names_the_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(CombineError, match=r"no valid export among the 1 given, nothing to train on .*bad.npz"):
        stages.combine([str(bad)], str(tmp_path / "set"))
    assert not (tmp_path / "set").exists()


def test_gate_skips_when_too_few_games(generations, tmp_path):
    combine_exports(generations, tmp_path / "set")
    assert stages.gate(str(tmp_path / "set"), min_games=1000) == {
        "status": "skipped",
        "num_games": 9,
        "num_positions": npz.open_dir(tmp_path / "set").num_positions,
        "min_games": 1000,
        "reason": "only 9 games in the training set, fewer than min_games=1000; play more games",
    }
    assert stages.gate(str(tmp_path / "set"), min_games=9)["status"] == "ready"


def test_sample_weights_of_the_inputs_carry_into_the_combined_set(generations, tmp_path):
    ps = load_npz(generations[0])
    w = np.ones(ps.num_positions, dtype=np.float32)
    w[0] = 3.0
    path = str(npz.save_npz(tmp_path / "weighted.npz", replace(ps, sample_weights=w)))
    combine_exports([path], tmp_path / "set")
    out = npz.open_dir(tmp_path / "set").sample_weights
    assert out[0] == pytest.approx(3 * out[1], rel=1e-5)


def test_an_empty_board_config_parameter_means_any(generations, tmp_path):
    report = stages.combine(generations, str(tmp_path / "set"), board_config="")
    assert report["fallback"] is False and report["board_config"] == "hex5_2p"


def test_combine_over_a_folder_mixing_damaged_files_keeps_every_valid_row(generations, small_export, tmp_path):
    from tests.unit.selfplay import damaged
    from tuneloop.selfplay.exports import ValidatorLimits

    folder = tmp_path / "exports"
    files = damaged.build_all(folder, damaged.arrays_of(small_export))
    paths = sorted(str(p) for p in files.values()) + list(generations)
    limits = ValidatorLimits(max_total_bytes=16 << 20)
    report = stages.combine(paths, str(tmp_path / "set"), limits=limits)
    warned = files["unknown key"]  # valid, with a warning: its rows count
    valid_rows = sum(load_npz(p).num_positions for p in generations) + load_npz(warned).num_positions
    assert report["fallback"] is False
    assert report["num_positions"] == valid_rows == npz.open_dir(tmp_path / "set").num_positions
    bad = {d.name for d in damaged.CLASSES if not d.warning_only}
    assert report["rejected_count"] == len(bad) and set(report["rejected"]) == {str(files[n]) for n in bad}
    assert all(report["rejected"][str(files[n])] for n in bad)  # each with its reasons
    assert "unknown key 'engine_build'" in report["warnings"][str(warned)][0]
    info = npz.read_dir_info(tmp_path / "set")["combine"]
    assert info["rejected_count"] == len(bad) and info["exports_given"] == len(paths)


def test_quality_score_weighs_positions_and_every_v2_key_is_kept(generations, tmp_path):
    a = load_npz(generations[0])
    n = a.num_positions
    scored = replace(
        a,
        quality_score=np.full(n, 0.5, np.float32),
        opponent_elo=np.where(np.arange(n) % 2, np.nan, 1500.0).astype(np.float32),
        opponent_types=np.full(n, npz.OPPONENT_TYPES.index("heuristic"), np.uint8),
        heuristics=np.arange(3 * n, dtype=np.float32).reshape(n, 3) / (3 * n),
    )
    pa = str(npz.save_npz(tmp_path / "scored.npz", scored))
    b = load_npz(generations[1])
    v1 = replace(b, schema_version=1, opponent_types=None, engine_modes=None, move_types=None)
    pb = str(npz.save_npz(tmp_path / "v1.npz", v1))
    report = combine_exports([pa, pb], tmp_path / "set", CombineConfig(freshness_half_life=float("inf")))
    data = npz.open_dir(tmp_path / "set")
    # freshest first: generation 1 (the v1 file), then the scored generation 0
    nb = b.num_positions
    assert [s["quality_from"] for s in report["sources"]] == ["victory_types", "quality_score"]
    assert [s["schema_version"] for s in report["sources"]] == [1, npz.SCHEMA_VERSION]
    w = data.sample_weights
    assert w[nb] == pytest.approx(0.5 * w[0], rel=1e-5)  # quality 0.5 against the v1 file's 1.0
    np.testing.assert_allclose(data.quality_score[:nb], 1.0)  # the quality those rows were weighed with
    np.testing.assert_allclose(data.quality_score[nb:], 0.5)
    np.testing.assert_array_equal(data.heuristics[nb:], scored.heuristics)
    assert np.isnan(data.heuristics[:nb]).all() and np.isnan(data.opponent_elo[:nb]).all()
    np.testing.assert_array_equal(data.opponent_elo[nb:], scored.opponent_elo)
    assert (data.opponent_types[:nb] == 0).all()  # "unknown" for the v1 rows
    assert (data.opponent_types[nb:] == npz.OPPONENT_TYPES.index("heuristic")).all()
    assert set(report["optional_keys"]) >= {npz.QUALITY_SCORE, npz.OPPONENT_ELO, npz.HEURISTICS}


def test_heuristics_of_different_widths_are_dropped_and_reported(generations, tmp_path):
    paths = []
    for i, width in enumerate((2, 3)):
        ps = load_npz(generations[i])
        h = np.zeros((ps.num_positions, width), np.float32)
        paths.append(str(npz.save_npz(tmp_path / f"h{width}.npz", replace(ps, heuristics=h))))
    report = combine_exports(paths, tmp_path / "set")
    assert "widths [2, 3]" in report["dropped_columns"]["heuristics"]
    assert npz.open_dir(tmp_path / "set").heuristics is None
    assert report["num_positions"] == sum(load_npz(p).num_positions for p in paths)
