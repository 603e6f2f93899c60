"""gs:// storage on fake-gcs-server: the same create-only and compare-and-set semantics as local paths."""

from __future__ import annotations

import json
import threading

import pytest

from tuneloop import storage
from tuneloop.registry import ChampionMoved, FileRegistry


def test_create_only_write_refuses_a_second_writer_and_keeps_the_first(gcs):
    uri = f"{gcs}/datasets/abc/train.jsonl"
    storage.write(uri, b"first\n", if_generation=None)
    with pytest.raises(storage.ConflictError, match="already exists"):
        storage.write(uri, b"second\n", if_generation=None)
    assert storage.read_bytes(uri) == b"first\n"


def test_compare_and_set_uses_object_generations(gcs):
    uri = f"{gcs}/state.json"
    storage.write_json(uri, {"watermark": "a"}, if_generation=None)
    value, seen = storage.read_json(uri)
    assert value == {"watermark": "a"} and seen.isdigit()
    storage.write_json(uri, {"watermark": "b"}, if_generation=seen)
    with pytest.raises(storage.ConflictError, match="changed since it was read"):
        storage.write_json(uri, {"watermark": "c"}, if_generation=seen)
    assert storage.read_json(uri)[0] == {"watermark": "b"}


def test_a_local_token_is_not_a_gcs_generation(gcs):
    uri = f"{gcs}/state.json"
    storage.write(uri, b"{}", if_generation=None)
    with pytest.raises(ValueError, match="if_generation=.*not a Cloud Storage generation"):
        storage.write(uri, b"{}", if_generation="9f86d081884c7d65")


def test_listing_and_exists_see_folders_as_prefixes(gcs):
    for name in ("m/versions/v1/claim.json", "m/versions/v2/claim.json", "m/aliases.json"):
        storage.write(f"{gcs}/{name}", b"{}", if_generation=None)
    assert storage.list_prefix(f"{gcs}/m") == [f"{gcs}/m/aliases.json", f"{gcs}/m/versions"]
    assert storage.list_prefix(f"{gcs}/m/versions") == [f"{gcs}/m/versions/v1", f"{gcs}/m/versions/v2"]
    assert storage.list_files(f"{gcs}/m") == [
        "aliases.json",
        "versions/v1/claim.json",
        "versions/v2/claim.json",
    ]
    assert storage.exists(f"{gcs}/m/versions") and storage.exists(f"{gcs}/m/aliases.json")
    assert not storage.exists(f"{gcs}/nothing") and storage.read(f"{gcs}/nothing") is None


def test_download_dir_mirrors_a_tree_and_follows_changes(gcs, tmp_path):
    storage.write(f"{gcs}/ds/a.txt", b"A", if_generation=None)
    storage.write(f"{gcs}/ds/sub/b.txt", b"B", if_generation=None)
    local = storage.download_dir(f"{gcs}/ds")
    assert (local / "a.txt").read_bytes() == b"A" and (local / "sub" / "b.txt").read_bytes() == b"B"
    assert str(local).startswith(str(tmp_path / "cache"))  # TUNELOOP_CACHE_DIR
    storage.write(f"{gcs}/ds/a.txt", b"A2")
    (local / "mine.txt").write_text("not from the bucket")
    again = storage.download_dir(f"{gcs}/ds")
    assert again == local and (local / "a.txt").read_bytes() == b"A2"
    assert (local / "mine.txt").exists()  # never deletes what it did not download
    with pytest.raises(storage.StorageError, match="no such directory"):
        storage.download_dir(f"{gcs}/missing")


def test_a_missing_bucket_names_the_uri(gcs):
    with pytest.raises(storage.StorageError, match="gs://no-such-bucket-tl/x"):
        storage.write("gs://no-such-bucket-tl/x", b"1")


def test_the_file_registry_runs_on_gcs_and_two_racing_alias_moves_have_one_winner(gcs, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00\x01")
    reg = FileRegistry(f"{gcs}/registry", "support-intent")
    base = dict(
        provider="sklearn",
        model_ref="m",
        metrics={"macro_f1": 0.8},
        example_ids=["a"],
        config={},
        blessing=None,
    )
    v1 = reg.register(model_dir=str(model), data_hash="11" * 32, **base)
    reg.set_champion(v1.version, expected=None, reason="first")
    v2 = reg.register(model_dir=None, data_hash="22" * 32, **base)
    v3 = reg.register(model_dir=None, data_hash="33" * 32, **base)
    assert [v.version for v in reg.versions()] == ["v1", "v2", "v3"]
    assert storage.read_bytes(f"{v1.model_uri}/weights.bin") == b"\x00\x01"

    # Both candidates were evaluated against v1 and promote at the same moment from two "machines".
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def promote(version):
        barrier.wait()
        try:
            outcomes[version] = reg.set_champion(
                version, expected="v1", reason=f"{version} is better"
            ).version
        except ChampionMoved as exc:
            outcomes[version] = exc

    threads = [threading.Thread(target=promote, args=(v,)) for v in (v2.version, v3.version)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [v for v, o in outcomes.items() if o == v]
    losers = [o for o in outcomes.values() if isinstance(o, ChampionMoved)]
    assert len(winners) == 1 and len(losers) == 1
    assert reg.champion().version == winners[0]
    assert losers[0].current == winners[0] and losers[0].expected == "v1"
    assert "re-evaluate" in str(losers[0])
    assert reg.rollback(reason="undo").version == "v1"


def test_a_dataset_on_gcs_loads_through_the_cache_not_the_working_directory(gcs, tmp_path, monkeypatch):
    from tests.fakes.data import support_messages
    from tuneloop import datasets

    built = tmp_path / "built"
    datasets.build_dataset(support_messages(60, seed=2), built, previous=None, formats=[], min_examples=4)
    uri = f"{gcs}/datasets/one"
    storage.upload_dir(built, uri)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    ds = datasets.load_dataset(uri)
    assert sum(len(v) for v in ds.splits.values()) == sum(ds.manifest["counts"].values())
    assert list(work.iterdir()) == []  # nothing was mirrored into the task's working directory


def test_a_dataset_published_to_gcs_holds_only_its_data(gcs, tmp_path):
    from tests.fakes.data import support_messages
    from tuneloop import datasets

    built = tmp_path / "built"
    datasets.build_dataset(support_messages(60, seed=3), built, previous=None, formats=["openai"], min_examples=4)
    (built / "openai" / "stray.jsonl.lock").write_bytes(b"")  # what an older writer left behind
    root = f"{gcs}/support"
    uri = datasets.publish(built, root, expected=datasets.RootState.read(root))
    files = storage.list_files(uri)
    assert {"manifest.json", "canonical/train.parquet", "openai/train.jsonl", "openai/report.json"} <= set(files)
    everything = storage.list_files(gcs)
    assert not [f for f in everything if f.endswith((".lock", ".tmp"))], everything
    assert "support/state.json" in everything
    assert datasets.load_dataset(uri).manifest["counts"] == json.loads((built / "manifest.json").read_text())["counts"]
