"""Storage semantics the loop relies on: create-only writes and compare-and-set on generations."""

from __future__ import annotations

import threading

import pytest

from tuneloop import storage


def test_create_only_write_refuses_to_overwrite(tmp_path):
    uri = str(tmp_path / "v1" / "version.json")
    storage.write(uri, b"first", if_generation=None)
    with pytest.raises(storage.ConflictError, match="already exists"):
        storage.write(uri, b"second", if_generation=None)
    assert storage.read_bytes(uri) == b"first"


def test_compare_and_set_detects_a_concurrent_change(tmp_path):
    uri = str(tmp_path / "aliases.json")
    gen = storage.write_json(uri, {"champion": "v1"})
    _, seen = storage.read_json(uri)
    assert seen == gen
    storage.write_json(uri, {"champion": "v2"}, if_generation=seen)
    with pytest.raises(storage.ConflictError, match="changed since it was read"):
        storage.write_json(uri, {"champion": "v3"}, if_generation=seen)
    assert storage.read_json(uri)[0] == {"champion": "v2"}


def test_racing_writers_exactly_one_wins(tmp_path):
    uri = str(tmp_path / "state.json")
    storage.write_json(uri, {"n": 0})
    _, gen = storage.read_json(uri)
    results = []

    def attempt(i):
        try:
            storage.write_json(uri, {"n": i}, if_generation=gen)
            results.append(("won", i))
        except storage.ConflictError:
            results.append(("lost", i))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for r, i in results if r == "won"]
    assert len(winners) == 1
    assert storage.read_json(uri)[0] == {"n": winners[0]}


def test_remote_scheme_without_backend_gives_a_clear_error():
    with pytest.raises(storage.StorageError, match=r"s3://.*needs the cloud extra"):
        storage.read("s3://bucket/x")
