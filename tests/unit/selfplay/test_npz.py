"""The NPZ schema: round trip, CSR merge, and every rule the validator enforces (with its reason)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tuneloop.selfplay import npz
from tuneloop.selfplay.cli import npz_app
from tuneloop.selfplay.exports import load_npz, validate_file, validate_path


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].copy() for k in z.files}


def _write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def test_round_trip_keeps_every_array_and_the_metadata(small_export, tmp_path):
    ps = load_npz(small_export)
    again = load_npz(npz.save_npz(tmp_path / "copy.npz", ps))
    # self-play writes every optional key but the three it has no value for
    unwritten = {npz.QUALITY_SCORE, npz.OPPONENT_ELO, npz.HEURISTICS}
    assert set(ps.optional_keys()) == set(npz.OPTIONAL_DTYPES) - unwritten
    for key in (*npz.ARRAY_KEYS, *ps.optional_keys()):
        a, b = getattr(ps, key), getattr(again, key)
        assert (
            a.dtype
            == b.dtype
            == npz.POSITION_DTYPES.get(key, npz.CSR_DTYPES.get(key, npz.OPTIONAL_DTYPES.get(key)))
        )
        np.testing.assert_array_equal(a, b)
    assert (again.board_config, again.policy_size, again.schema_version) == (
        "hex5_2p",
        25,
        npz.SCHEMA_VERSION,
    )
    assert again.metadata["generation"] == 0 and again.metadata["selfplay_config"]["games"] == 12
    # no object arrays anywhere: every key loads without pickle
    with np.load(small_export, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
        assert set(z.files) == set(npz.ALL_KEYS) - unwritten


def test_a_real_export_has_sparse_policies_that_sum_to_one(small_export):
    ps = load_npz(small_export)
    dense = ps.dense_policies()
    np.testing.assert_allclose(dense.sum(1), 1.0, atol=1e-5)
    assert np.diff(ps.policy_offsets).max() < ps.policy_size  # sparse: not every action has mass
    assert validate_file(small_export).errors == []


def test_merging_two_files_equals_their_concatenation(small_export, train_export):
    a, b = load_npz(small_export), load_npz(train_export)
    merged = npz.concat([a, b])
    assert merged.num_positions == a.num_positions + b.num_positions
    np.testing.assert_array_equal(
        merged.dense_policies(), np.concatenate([a.dense_policies(), b.dense_policies()])
    )
    for key in (npz.FEATURES, npz.GLOBALS, npz.VALUES, npz.VALUES_MP, npz.GAME_IDS, npz.MOVE_NUMBERS):
        np.testing.assert_array_equal(
            getattr(merged, key), np.concatenate([getattr(a, key), getattr(b, key)])
        )
    assert merged.policy_offsets[a.num_positions] == a.policy_offsets[-1]
    assert npz.validate_arrays(merged.to_arrays()) == []


def test_select_gathers_the_policy_rows_of_the_chosen_positions(small_export):
    ps = load_npz(small_export)
    idx = np.array([5, 0, ps.num_positions - 1])
    np.testing.assert_array_equal(ps.select(idx).dense_policies(), ps.dense_policies()[idx])


def test_combined_directory_round_trip_is_memory_mapped(small_export, tmp_path):
    ps = load_npz(small_export)
    npz.save_dir(tmp_path / "set", ps, info={"note": "x"})
    back = npz.open_dir(tmp_path / "set")
    assert isinstance(back.features, np.memmap)
    np.testing.assert_array_equal(back.dense_policies(), ps.dense_policies())
    assert npz.read_dir_info(tmp_path / "set")["note"] == "x"
    assert validate_path(tmp_path / "set") == {str(tmp_path / "set"): []}


def _set(key, value):
    def f(a):
        a[key] = value(a) if callable(value) else value

    return f


def _drop(key):
    def f(a):
        del a[key]

    return f


def _poke(key, index, value):
    def f(a):
        a[key] = a[key].copy()
        a[key][index] = value

    return f


# (name, mutation, words the reason must contain)
REJECTIONS = [
    ("missing key", _drop(npz.VALUES), ["missing keys", "values"]),
    ("missing metadata", _drop(npz.META_BOARD_CONFIG), ["missing keys", "board_config"]),
    (
        "wrong dtype features",
        _set(npz.FEATURES, lambda a: a[npz.FEATURES].astype(np.float32)),
        ["features", "dtype", "uint8"],
    ),
    (
        "wrong dtype offsets",
        _set(npz.POLICY_OFFSETS, lambda a: a[npz.POLICY_OFFSETS].astype(np.int32)),
        ["policy_offsets", "int64"],
    ),
    ("features not 4-d", _set(npz.FEATURES, lambda a: a[npz.FEATURES][:, 0]), ["features", "(N, C, H, W)"]),
    ("short column", _set(npz.GAME_IDS, lambda a: a[npz.GAME_IDS][:-1]), ["game_ids", "shape"]),
    ("globals not 2-d", _set(npz.GLOBALS, lambda a: a[npz.GLOBALS][:, 0]), ["globals", "(N, G)"]),
    ("values_mp seats", _set(npz.VALUES_MP, lambda a: a[npz.VALUES_MP][:, :3]), ["values_mp", "seats"]),
    ("nan value", _poke(npz.VALUES, 3, np.nan), ["values", "NaN/inf"]),
    ("inf global", _poke(npz.GLOBALS, (0, 0), np.inf), ["globals", "NaN/inf"]),
    ("value out of range", _poke(npz.VALUES, 2, 1.5), ["values", "[-1, 1]"]),
    ("policy does not sum to 1", _poke(npz.POLICY_VALUES, 0, 0.0), ["sum to 1", "row 0"]),
    ("negative probability", _poke(npz.POLICY_VALUES, 0, -0.5), ["policy_values", "[0, 1]"]),
    ("offsets do not match entries", _poke(npz.POLICY_OFFSETS, -1, 10**6), ["last offset", "does not match"]),
    ("offsets decrease", _poke(npz.POLICY_OFFSETS, 2, 0), ["policy_offsets", "decreasing"]),
    ("first offset", _poke(npz.POLICY_OFFSETS, 0, 1), ["first offset", "must be 0"]),
    (
        "offsets length",
        _set(npz.POLICY_OFFSETS, lambda a: a[npz.POLICY_OFFSETS][:-1]),
        ["policy_offsets", "(N + 1,)"],
    ),
    ("action id out of range", _poke(npz.POLICY_INDICES, 0, 99), ["policy_indices", "[0, 25)"]),
    ("seat beyond players", _poke(npz.CURRENT_PLAYER, 0, 3), ["current_player", "num_players"]),
    (
        "values not player-to-move",
        _set(npz.VALUES, lambda a: -a[npz.VALUES]),
        ["values_mp", "player to move"],
    ),
    ("unknown victory", _poke(npz.VICTORY_TYPES_KEY, 0, 42), ["victory_types", "unknown"]),
    ("move past game end", _poke(npz.MOVE_NUMBERS, 0, 10**4), ["move_numbers", "total_game_moves"]),
    ("negative weight", _poke(npz.SAMPLE_WEIGHTS, 0, -1.0), ["sample_weights", ">= 0"]),
    (
        "schema version",
        _set(npz.META_SCHEMA_VERSION, np.asarray(99, dtype=np.int64)),
        ["schema_version", "99"],
    ),
    ("bad metadata json", _set(npz.META_EXTRA, np.asarray("{oops", dtype=np.str_)), ["metadata", "JSON"]),
    (
        "empty file",
        lambda a: a.update(
            {k: a[k][:0] for k in npz.POSITION_DTYPES}
            | {
                npz.POLICY_OFFSETS: np.zeros(1, np.int64),
                npz.POLICY_INDICES: a[npz.POLICY_INDICES][:0],
                npz.POLICY_VALUES: a[npz.POLICY_VALUES][:0],
                npz.SAMPLE_WEIGHTS: a[npz.SAMPLE_WEIGHTS][:0],
                npz.TIMESTAMPS: a[npz.TIMESTAMPS][:0],
            }
        ),
        ["no positions"],
    ),
]


@pytest.mark.parametrize("name,mutate,words", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_validator_rejects_with_the_reason(small_export, tmp_path, name, mutate, words):
    arrays = _arrays(small_export)
    mutate(arrays)
    path = _write(tmp_path / "bad.npz", arrays)
    reasons = validate_file(path).errors
    assert reasons, f"{name}: accepted"
    text = " | ".join(reasons)
    for w in words:
        assert w in text, f"{name}: {w!r} not in {text}"
    with pytest.raises(npz.SchemaError) as err:
        load_npz(path)
    assert err.value.reasons == reasons


def test_validator_rejects_object_arrays_and_non_npz_files(small_export, tmp_path):
    arrays = _arrays(small_export)
    arrays[npz.GAME_IDS] = np.array([object()] * arrays[npz.GAME_IDS].size, dtype=object)
    np.savez(tmp_path / "obj.npz", **arrays)  # numpy pickles object arrays
    assert "object arrays are not allowed" in validate_file(tmp_path / "obj.npz").errors[0]
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "not a readable .npz" in validate_file(tmp_path / "junk.npz").errors[0]
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as z:
        z.writestr("x.txt", "hello")
    assert "is not a <key>.npy array" in validate_file(tmp_path / "other.npz").errors[0]


def test_save_refuses_invalid_positions_and_writes_nothing(small_export, tmp_path):
    ps = load_npz(small_export)
    bad = npz.PositionSet(**{**{f: getattr(ps, f) for f in ps.__dataclass_fields__}, "values": ps.values * 3})
    with pytest.raises(npz.SchemaError, match=r"values: outcomes must lie in \[-1, 1\]"):
        npz.save_npz(tmp_path / "out.npz", bad)
    assert list(tmp_path.iterdir()) == []


def test_cli_validate_exits_nonzero_on_a_bad_file_and_prints_its_reasons(small_export, tmp_path):
    runner = CliRunner()
    good = runner.invoke(npz_app, ["validate", str(small_export)])
    assert good.exit_code == 0, good.output
    assert "1 valid, 0 invalid" in good.output

    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "good.npz").write_bytes(small_export.read_bytes())
    arrays = _arrays(small_export)
    arrays[npz.VALUES] = arrays[npz.VALUES] * 2
    _write(folder / "bad.npz", arrays)
    bad = runner.invoke(npz_app, ["validate", str(folder)])
    assert bad.exit_code == 1
    assert f"INVALID {folder / 'bad.npz'}" in bad.output and "outcomes must lie in [-1, 1]" in bad.output
    assert f"ok      {folder / 'good.npz'}" in bad.output

    as_json = runner.invoke(npz_app, ["validate", "--json", str(folder)])
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)
    files = {f["path"]: f for f in report["files"]}
    assert files[str(folder / "good.npz")]["errors"] == [] and files[str(folder / "good.npz")]["valid"]
    assert files[str(folder / "bad.npz")]["errors"] and not files[str(folder / "bad.npz")]["valid"]
    assert (report["valid"], report["invalid"]) == (1, 1)
    missing = runner.invoke(npz_app, ["validate", str(tmp_path / "nope.npz")])
    assert missing.exit_code == 1 and "no such file" in missing.output


def test_npz_app_mounts_as_a_sub_command(small_export):
    import typer

    app = typer.Typer()
    app.add_typer(npz_app, name="npz")

    @app.command()
    def other() -> None:  # a second command, as in the main CLI
        pass

    result = CliRunner().invoke(app, ["npz", "validate", str(small_export)])
    assert result.exit_code == 0 and "1 valid, 0 invalid" in result.output
