"""The claim that makes a schedule and an upload of one dataset tune it once (local files and GCS)."""

from __future__ import annotations

import threading

import pytest

from tuneloop import claims

HASH = "ab" * 32
PARAMS = {"registry_uri": "gs://b/registry", "provider": "sklearn"}


def test_the_identity_defaults_are_the_pipelines_defaults():
    from tuneloop.pipelines.local_runner import pipeline_parameters

    for pipeline in ("tune-and-promote", "continuous-tuning"):
        params = pipeline_parameters(pipeline)
        for name, default in claims.IDENTITY_DEFAULTS.items():
            assert (params[name].default or "") == default, (pipeline, name)


def test_both_paths_compute_the_same_id_and_other_identities_get_another():
    trigger_side = claims.tuning_id(HASH, PARAMS)  # TUNELOOP_PARAMS: defaults left out
    run_side = claims.tuning_id(HASH, {**PARAMS, "model_name": "support-intent", "base_model": ""})
    assert trigger_side == run_side and trigger_side.startswith(f"tune-and-promote-{HASH[:32]}-")
    assert claims.tuning_id(HASH, {**PARAMS, "provider": "openai"}) != trigger_side
    assert claims.tuning_id("cd" * 32, PARAMS) != trigger_side


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_the_first_claim_wins_and_a_holder_can_claim_again(where, tmp_path, request):
    root = str(tmp_path / "root") if where == "local" else f"{request.getfixturevalue('gcs')}/root"
    results: list[claims.Claim] = []
    holders = [f"continuous-tuning:run-{i}" for i in range(6)] + [claims.UPLOAD_TRIGGER] * 2
    threads = [threading.Thread(target=lambda h=h: results.append(claims.claim(root, HASH, PARAMS, holder=h)))
               for h in holders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winner = {c.holder for c in results}
    assert len(winner) == 1  # everyone sees the same holder
    [holder] = winner
    assert sum(c.won for c in results) == holders.count(holder)  # the winner's own attempts, no one else
    again = claims.claim(root, HASH, PARAMS, holder=holder)
    assert again.won and again.job_id == results[0].job_id  # a retry of the holder goes on


def test_a_run_that_loses_the_claim_is_told_who_tunes_the_dataset(tmp_path):
    root = str(tmp_path)
    claims.claim(root, HASH, PARAMS, holder=claims.UPLOAD_TRIGGER)
    out = claims.claim_for_run(dataset_root=root, dataset_uri=f"{root}/datasets/{HASH}", run_name="nightly-1",
                               provider="sklearn", model_name="support-intent", registry_uri="gs://b/registry",
                               base_model="")
    assert out["status"] == "taken" and "gcs-upload" in out["reason"] and out["job_id"] in out["reason"]
