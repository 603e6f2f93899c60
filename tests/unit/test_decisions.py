"""The decision log: records round-trip, bad records are refused naming the field."""

import json

import pytest

from tuneloop import decisions as dl


def test_records_round_trip_through_the_log(tmp_path):
    path = tmp_path / "run" / dl.DECISIONS
    first = dl.Decision("label", "label=billing", "the labeller's top answer", 0.92, dl.inputs_hash({"id": "a"}))
    second = dl.Decision("attempt", "attempt 2: n_epochs 3 -> 4", "validation loss still falling",
                         details={"attempt": 2, "hyperparameters": {"n_epochs": 4}})
    assert dl.append(path, [first]) == 1
    assert dl.append(path, [second]) == 1
    assert dl.read(path) == [first, second]
    assert dl.read(tmp_path / "absent.jsonl") == []


def test_inputs_hash_is_canonical_and_content_sensitive():
    assert dl.inputs_hash({"a": 1, "b": [1, 2]}) == dl.inputs_hash({"b": [1, 2], "a": 1})
    assert dl.inputs_hash({"a": 1}) != dl.inputs_hash({"a": 2})
    assert dl.inputs_hash("x").startswith("sha256:")


@pytest.mark.parametrize("kwargs, field", [
    ({"stage": "", "decision": "d", "reasoning": "r"}, "stage"),
    ({"stage": "s", "decision": "d", "reasoning": " "}, "reasoning"),
    ({"stage": "s", "decision": "d", "reasoning": "r", "confidence": 1.5}, "confidence"),
    ({"stage": "s", "decision": "d", "reasoning": "r", "confidence": float("nan")}, "confidence"),
    ({"stage": "s", "decision": "d", "reasoning": "r", "confidence": True}, "confidence"),
])
def test_bad_records_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        dl.Decision(**kwargs)


def test_a_broken_line_names_the_file_and_line(tmp_path):
    path = tmp_path / dl.DECISIONS
    dl.append(path, [dl.Decision("s", "d", "r")])
    with path.open("a") as f:
        f.write(json.dumps({"stage": "s", "decision": "d", "reasoning": "r", "colour": "red"}) + "\n")
    with pytest.raises(ValueError, match=r"line 2 .*colour"):
        dl.read(path)
