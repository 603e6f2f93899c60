"""The file registry on a real temp directory: numbering under races, champion CAS, rollback."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tuneloop import storage
from tuneloop.registry import ChampionMoved, FileRegistry, RegistryError


def model_dir(tmp_path: Path, name: str, payload: str) -> str:
    d = tmp_path / "trained" / name
    (d / "sub").mkdir(parents=True)
    (d / "model.joblib").write_text(payload)
    (d / "sub" / "vocab.txt").write_text("a\nb\n")
    return str(d)


def register(reg: FileRegistry, f1: float, *, model: str | None = None, ids=("e1", "e2")):
    return reg.register(
        provider="sklearn",
        model_ref=model or "remote-model-id",
        model_dir=model,
        metrics={"macro_f1": f1, "n": 100},
        data_hash=f"hash-{f1}",
        example_ids=list(ids),
        config={"C": 1.0},
        blessing={"blessed": True, "reason": "test"},
        lineage={"run": "r1"},
    )


def run_together(fns):
    """Run callables in threads released at the same instant; return (results, errors)."""
    barrier = threading.Barrier(len(fns))
    results, errors = [None] * len(fns), [None] * len(fns)

    def go(i, fn):
        barrier.wait()
        try:
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            errors[i] = exc

    threads = [threading.Thread(target=go, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_register_stores_model_files_ids_and_record(tmp_path):
    reg = FileRegistry(str(tmp_path / "reg"), "support-intent")
    rec = register(reg, 0.81, model=model_dir(tmp_path, "m1", "weights-1"), ids=["id-a", "id-b", "id-c"])
    assert rec.version == "v1" and rec.number == 1
    vdir = tmp_path / "reg" / "support-intent" / "versions" / "v1"
    assert (vdir / "model" / "model.joblib").read_text() == "weights-1"
    assert (vdir / "model" / "sub" / "vocab.txt").exists()
    assert (vdir / "example_ids.txt").read_text() == "id-a\nid-b\nid-c\n"
    assert json.loads((vdir / "version.json").read_text()) == rec.to_dict()
    assert rec.model_uri == str(vdir / "model") and rec.n_examples == 3
    assert reg.get("v1") == rec == reg.get(1)
    assert reg.example_ids("v1") == ["id-a", "id-b", "id-c"]
    rec2 = register(reg, 0.84)  # a remote model: nothing to copy
    assert rec2.version == "v2" and rec2.model_uri is None
    assert [r.version for r in reg.versions()] == ["v1", "v2"]
    assert reg.champion() is None  # registering never moves the champion


def test_racing_registers_get_distinct_numbers(tmp_path):
    root = str(tmp_path / "reg")
    fns = [lambda i=i: register(FileRegistry(root, "m"), 0.5 + i / 100, ids=[f"x{i}"]) for i in range(8)]
    results, errors = run_together(fns)
    assert errors == [None] * 8
    assert sorted(r.number for r in results) == list(range(1, 9))
    stored = {r.version: r.data_hash for r in FileRegistry(root, "m").versions()}
    assert stored == {r.version: r.data_hash for r in results}


def test_bad_register_input_burns_no_version_number(tmp_path):
    reg = FileRegistry(str(tmp_path), "m")
    with pytest.raises(ValueError, match="model_dir="):
        register(reg, 0.5, model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not an id"):
        register(reg, 0.5, ids=["ok", "bad\nid"])
    assert register(reg, 0.5).version == "v1"


def test_get_unknown_version_names_the_registered_ones(tmp_path):
    reg = FileRegistry(str(tmp_path), "m")
    register(reg, 0.5)
    with pytest.raises(RegistryError, match=r"no version v7; registered versions are \['v1'\]"):
        reg.get("v7")
    with pytest.raises(RegistryError, match="not a version name"):
        reg.get("latest")


def test_promotion_is_compare_and_set_against_the_evaluated_champion(tmp_path):
    reg = FileRegistry(str(tmp_path), "m")
    v1, v2, v3 = register(reg, 0.7), register(reg, 0.8), register(reg, 0.9)
    assert reg.set_champion("v1", expected=None, reason="first blessed model") == v1
    assert reg.set_champion("v2", expected="v1", reason="macro_f1 0.800 >= 0.700 - 0.050") == v2
    assert reg.champion() == v2
    # v3 was evaluated while v1 was champion; v2 took over before v3's promotion ran.
    with pytest.raises(ChampionMoved) as err:
        reg.set_champion("v3", expected="v1", reason="evaluated against v1")
    assert err.value.current == "v2" and err.value.expected == "v1"
    assert "it is v2, but v3 was evaluated against v1" in str(err.value)
    assert "re-evaluate v3 against v2" in str(err.value)
    assert isinstance(err.value, storage.ConflictError)
    assert reg.champion() == v2
    with pytest.raises(ChampionMoved, match="evaluated against no champion"):
        reg.set_champion("v3", expected=None, reason="thought it was the first")
    assert reg.set_champion("v3", expected="v2", reason="re-evaluated against v2") == v3


def test_retried_promotion_is_a_no_op(tmp_path):
    reg = FileRegistry(str(tmp_path), "m")
    register(reg, 0.7)
    reg.set_champion("v1", expected=None, reason="first")
    before = (tmp_path / "m" / "aliases.json").read_bytes()
    assert reg.set_champion("v1", expected=None, reason="task retried").version == "v1"
    assert (tmp_path / "m" / "aliases.json").read_bytes() == before


def test_promoting_an_unregistered_version_is_refused(tmp_path):
    reg = FileRegistry(str(tmp_path), "m")
    with pytest.raises(RegistryError, match="no version v1"):
        reg.set_champion("v1", expected=None, reason="r")


def test_racing_promotions_from_the_same_champion_exactly_one_wins(tmp_path):
    root = str(tmp_path)
    setup = FileRegistry(root, "m")
    register(setup, 0.6)
    setup.set_champion("v1", expected=None, reason="first")
    for _ in range(5):  # several rounds, four separate registry objects racing each time
        expected = setup.champion().version
        contenders = [register(setup, 0.7).version for _ in range(4)]
        fns = [
            lambda v=v, e=expected: FileRegistry(root, "m").set_champion(v, expected=e, reason=f"beat {e}")
            for v in contenders
        ]
        results, errors = run_together(fns)
        winners = [r.version for r in results if r is not None]
        assert len(winners) == 1
        assert all(isinstance(e, ChampionMoved) for e in errors if e is not None)
        assert sum(e is not None for e in errors) == 3
        assert setup.champion().version == winners[0]
    history = setup.show()["history"]
    assert len(history) == 6
    assert all(h["previous"] == prev["version"] for prev, h in zip(history, history[1:], strict=False))


class _PromotedBehindItsBack(FileRegistry):
    """A registry whose alias read is followed at once by another registry's promotion: the alias
    content this registry saw still names the expected champion, but the file's generation moved."""

    def __init__(self, root, name, other: FileRegistry, version: str, expected: str):
        super().__init__(root, name)
        self.other, self.version, self.expected, self.fired = other, version, expected, False

    def _read_aliases(self):
        seen = super()._read_aliases()
        if not self.fired:
            self.fired = True
            self.other.set_champion(self.version, expected=self.expected, reason="the other promotion")
        return seen


def test_champion_moved_between_read_and_write_is_detected_by_generation(tmp_path):
    root = str(tmp_path)
    reg = FileRegistry(root, "m")
    register(reg, 0.6), register(reg, 0.7), register(reg, 0.8)
    reg.set_champion("v1", expected=None, reason="first")
    racer = _PromotedBehindItsBack(root, "m", FileRegistry(root, "m"), version="v2", expected="v1")
    with pytest.raises(ChampionMoved, match="while this promotion was writing: it is v2") as err:
        racer.set_champion("v3", expected="v1", reason="evaluated against v1")
    assert isinstance(err.value.__cause__, storage.ConflictError)
    assert reg.champion().version == "v2"
    assert [h["version"] for h in reg.show()["history"]] == ["v1", "v2"]


def test_rollback_walks_back_through_champions(tmp_path):
    reg = FileRegistry(str(tmp_path), "m")
    for f1 in (0.7, 0.8, 0.9):
        register(reg, f1)
    reg.set_champion("v1", expected=None, reason="first")
    reg.set_champion("v2", expected="v1", reason="better")
    reg.set_champion("v3", expected="v2", reason="better still")
    assert reg.rollback(reason="v3 misroutes refunds in production").version == "v2"
    assert reg.champion().version == "v2"
    last = reg.show()["history"][-1]
    assert last["kind"] == "rollback" and last["previous"] == "v3" and last["version"] == "v2"
    assert last["reason"] == "v3 misroutes refunds in production"
    assert reg.rollback(reason="v2 too").version == "v1"
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback(reason="nothing left")
    assert reg.champion().version == "v1"
    # A promotion after rollbacks still compares against the current champion.
    assert reg.set_champion("v3", expected="v1", reason="fixed and re-evaluated").version == "v3"
    assert reg.rollback(reason="again").version == "v1"


def test_rollback_without_champion_is_refused(tmp_path):
    reg = FileRegistry(str(tmp_path), "m")
    with pytest.raises(RegistryError, match="champion is none"):
        reg.rollback(reason="r")


def test_show_summarises_versions_and_champion(tmp_path):
    reg = FileRegistry(str(tmp_path), "support-intent")
    register(reg, 0.7), register(reg, 0.8)
    reg.set_champion("v2", expected=None, reason="first")
    shown = reg.show()
    assert shown["champion"] == "v2" and shown["model_name"] == "support-intent"
    assert [(v["version"], v["champion"], v["metrics"]["macro_f1"]) for v in shown["versions"]] == [
        ("v1", False, 0.7),
        ("v2", True, 0.8),
    ]
    json.dumps(shown)  # the CLI prints it as JSON


@pytest.mark.parametrize("name", ["", "a/b", "../up", "x y"])
def test_model_name_must_be_one_path_segment(tmp_path, name):
    with pytest.raises(ValueError, match="model_name="):
        FileRegistry(str(tmp_path), name)


def test_reason_is_required(tmp_path):
    reg = FileRegistry(str(tmp_path), "m")
    register(reg, 0.7)
    with pytest.raises(ValueError, match="reason"):
        reg.set_champion("v1", expected=None, reason=" ")
