"""tune-and-promote under kfp.local for each hosted provider, against the stand-ins.

The compiled-in pipeline runs as it would on Vertex: check-config, then the provider's ``dsl.If``
branch (tune -> evaluate -> promote), each task a subprocess of this test process
(``SubprocessRunner``). The tasks inherit ``os.environ``, so the stand-ins the fixtures start here and
the variables they set with ``monkeypatch`` (OPENAI_BASE_URL, GOOGLE_VERTEX_BASE_URL,
STORAGE_EMULATOR_HOST, AWS_ENDPOINT_URL, ANTHROPIC_BASE_URL, credentials) are what the real SDKs in
the tasks read; nothing is passed as a pipeline parameter but plain configuration.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fakes import fixtures as stand_ins
from tests.fakes.fixtures import stand_in_hyperparameters
from tests.local.conftest import run, summaries
from tests.unit.hosted import conftest as hosted
from tuneloop.providers import canonical_name
from tuneloop.registry import FileRegistry

# The pytest fixtures used here: the stand-ins (tests/fakes/fixtures.py: each sets the variables the
# SDKs read with monkeypatch) and the session's dataset rendered in every hosted format.
openai_fake = stand_ins.openai_fake
gcs = stand_ins.gcs
vertex_fake = stand_ins.vertex_fake
moto_server = stand_ins.moto_server
bedrock_fake = stand_ins.bedrock_fake
anthropic_fake = stand_ins.anthropic_fake
dataset = hosted.dataset

MODEL = "intents"
# The fakes' "tuned models" answer from a memory of the training file: well above these bars.
RULES = {"min_values": {"accuracy": 0.6}, "max_drop": {"macro_f1": 0.05}}


def params(dataset, tmp_path, provider: str, base_model: str, hp: dict, **extra) -> dict:
    return {
        "dataset_uri": dataset.uri,
        "registry_uri": str(tmp_path / "registry"),
        "reports_uri": str(tmp_path / "reports"),
        "provider": provider,
        "model_name": MODEL,
        "base_model": base_model,
        "hyperparameters": hp,
        **RULES,
        **extra,
    }


def task_output(run_dir, task: str, name: str) -> dict:
    """A JSON artifact written by the one ``task`` of this run that ran (kfp.local: <run>/<task>[-n]/<name>).

    Each ``dsl.If`` branch has its own copy of the task (``tune-model``, ``tune-model-2``, ...); only
    the chosen branch's copy runs, so exactly one of them has outputs.
    """
    dirs = [d for d in run_dir.iterdir() if d.is_dir() and re.fullmatch(rf"{task}(-\d+)?", d.name)]
    assert len(dirs) == 1, (
        f"expected one {task} task to run (one branch), found {sorted(d.name for d in dirs)}"
    )
    return json.loads((dirs[0] / name).read_text())


def run_branch(tmp_path, p: dict, summaries_before: int = 0):
    """Run tune-and-promote once; returns (run dir, the summary.json it wrote under reports_uri)."""
    run_dir = run("tune-and-promote", p, tmp_path / "runs")
    written = summaries(tmp_path / "reports")
    assert len(written) == summaries_before + 1
    summary = written[-1]
    assert summary["provider"] == canonical_name(p["provider"], p["hyperparameters"])  # as the first task named it
    assert summary["dataset_uri"] == p["dataset_uri"]
    assert summary["run"] and (tmp_path / "reports" / summary["run"] / "summary.json").is_file()
    assert task_output(run_dir, "promote-model", "summary") == summary  # the artifact and the report agree
    return run_dir, summary


def assert_promoted(tmp_path, summary: dict, provider: str) -> FileRegistry:
    assert summary["decision"]["blessed"] is True, summary["decision"]
    assert "no champion" in summary["decision"]["reason"]
    assert summary["champion_evaluated"] is None and summary["champion_metrics"] is None
    assert summary["promoted_version"] == "v1" and summary["champion_after"] == "v1"
    registry = FileRegistry(str(tmp_path / "registry"), MODEL)
    champion = registry.champion()
    assert champion.version == "v1" and champion.provider == provider
    return registry


def test_openai_branch_tunes_on_the_stand_in_and_promotes(openai_fake, dataset, tmp_path):
    base_model, hp = stand_in_hyperparameters("openai")
    hp.pop("budget_usd")  # the pipeline's budget_usd parameter fills it in
    hp.update(n_epochs=3, batch_size=8)  # integers: KFP hands them over as 3.0 and 8.0
    run_dir, summary = run_branch(
        tmp_path, params(dataset, tmp_path, "openai", base_model, hp, budget_usd=5.0)
    )
    registry = assert_promoted(tmp_path, summary, "openai")
    # the task subprocesses reached this process's stand-in with the key the fixture put in os.environ
    [job] = openai_fake.jobs.values()
    sent = job.body["method"]["supervised"]["hyperparameters"]
    assert sent == {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": "auto"}
    assert type(sent["n_epochs"]) is int and type(sent["batch_size"]) is int  # what OpenAI's API accepts
    assert job.status == "succeeded" and job.body["metadata"]["tuneloop_key"].startswith("tl-")
    assert len(openai_fake.files) == 2  # train + validation, uploaded once
    record = task_output(run_dir, "tune-model", "job")  # the job id was recorded before polling
    assert record["job_id"] == job.body["id"] and record["provider"] == "openai"
    assert registry.champion().model_ref == job.body["fine_tuned_model"]
    assert registry.champion().model_ref.startswith(f"ft:{base_model}:")
    assert openai_fake.answered == len(dataset.splits["eval"])  # the candidate answered every eval row
    # the evaluation's report says what the run spent: the accepted estimate and the requests sent
    spend = task_output(run_dir, "evaluate-model", "blessing")["spend"]
    assert 0 < spend["preflight"]["estimated_cost_usd"] <= 5.0
    assert spend["predict"]["candidate"]["requests"] == openai_fake.answered
    report = (tmp_path / "reports" / summary["run"] / "report.html").read_text()
    assert f"${spend['preflight']['estimated_cost_usd']:,.4f}" in report and "Evaluation requests" in report

    # The same data and training config with a raised budget: the job already paid for is adopted
    # (budget and poll settings are not part of the job key), and it is judged against v1.
    _, again = run_branch(
        tmp_path, params(dataset, tmp_path, "openai", base_model, hp, budget_usd=10.0), summaries_before=1
    )
    assert len(openai_fake.jobs) == 1 and len(openai_fake.files) == 2  # nothing submitted or uploaded again
    assert again["champion_evaluated"] == "v1" and again["champion_metrics"] == summary["candidate_metrics"]


def test_openai_key_is_read_in_each_task_from_secret_manager(openai_fake, dataset, tmp_path, monkeypatch):
    """On Vertex the key is not in the task's environment: it names a Secret Manager version instead."""
    from tests.fakes.openai_server import API_KEY
    from tests.fakes.secret_manager_server import FakeSecretManager
    from tuneloop import secrets

    server = FakeSecretManager().start()
    try:
        server.add("projects/tuneloop-test/secrets/openai-api-key", API_KEY)
        monkeypatch.delenv("OPENAI_API_KEY")
        monkeypatch.setenv(
            "OPENAI_API_KEY_SECRET", "projects/tuneloop-test/secrets/openai-api-key/versions/latest"
        )
        monkeypatch.setenv(secrets.SECRET_MANAGER_ENDPOINT_ENV, server.url)
        monkeypatch.setenv(secrets.GOOGLE_TOKEN_ENV, "test-access-token")
        base_model, hp = stand_in_hyperparameters("openai")
        _, summary = run_branch(tmp_path, params(dataset, tmp_path, "openai", base_model, hp))
        assert_promoted(tmp_path, summary, "openai")
        # tune and evaluate each read it at run time, each in its own process
        assert server.http.calls("versions.access") == 2
    finally:
        server.stop()
    run_dir = next((tmp_path / "runs").glob("tune-and-promote-*/"))
    assert API_KEY not in "".join(p.read_text() for p in run_dir.rglob("*") if p.is_file())  # never written


def test_openai_branch_on_a_dataset_published_to_gcs(openai_fake, gcs, dataset, tmp_path, monkeypatch):
    """The production shape: the upload trigger submits a gs:// dataset_uri; registry and reports on GCS too."""
    import uuid

    from google.cloud import storage as gcs_lib

    from tuneloop import datasets, storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    monkeypatch.setenv("TUNELOOP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # kfp.local tasks run (and mirror remote datasets) in the current directory
    bucket = f"tl-{uuid.uuid4().hex[:10]}"
    gcs_lib.Client(project="tuneloop-test").create_bucket(bucket)
    root = f"gs://{bucket}/support-intent"
    uri = datasets.publish(dataset.uri, root, expected=datasets.RootState.read(root))
    base_model, hp = stand_in_hyperparameters("openai")
    p = {
        **params(dataset, tmp_path, "openai", base_model, hp),
        "dataset_uri": uri,
        "registry_uri": f"gs://{bucket}/registry",
        "reports_uri": f"gs://{bucket}/reports",
    }
    run("tune-and-promote", p, tmp_path / "runs")
    [path] = [f for f in storage.list_files(p["reports_uri"]) if f.endswith("summary.json")]
    assert any(f.endswith("report.html") for f in storage.list_files(p["reports_uri"]))  # the report beside it
    summary, _ = storage.read_json(storage.join(p["reports_uri"], path))
    assert summary["dataset_uri"] == uri and summary["promoted_version"] == "v1"
    assert FileRegistry(p["registry_uri"], MODEL).champion().provider == "openai"
    assert [j.status for j in openai_fake.jobs.values()] == ["succeeded"]
    uploaded = {f["filename"]: openai_fake.file_data[i] for i, f in openai_fake.files.items()}
    train = next(v for k, v in uploaded.items() if k.endswith("-train.jsonl"))
    assert train == (Path(dataset.uri) / "openai" / "train.jsonl").read_bytes()  # the published bytes, as is


def test_gemini_branch_stages_on_gcs_tunes_on_vertex_and_promotes(vertex_fake, dataset, tmp_path):
    base_model, hp = stand_in_hyperparameters("gemini")
    hp.update(epoch_count=2, adapter_size=8)  # integers through KFP (2.0, 8.0)
    _, summary = run_branch(tmp_path, params(dataset, tmp_path, "gemini", base_model, hp))
    registry = assert_promoted(tmp_path, summary, "gemini")
    [job] = vertex_fake.jobs.values()
    sent = job.body["supervisedTuningSpec"]["hyperParameters"]
    assert sent["epochCount"] == 2 and type(sent["epochCount"]) is int and sent["adapterSize"] == "ADAPTER_SIZE_EIGHT"
    assert job.state == "JOB_STATE_SUCCEEDED"
    assert job.body["supervisedTuningSpec"]["trainingDatasetUri"].startswith("gs://tuneloop-staging/runs/tl-")
    assert registry.champion().model_ref == job.body["tunedModel"]["endpoint"]
    assert vertex_fake.answered == len(dataset.splits["eval"])


def test_claude_bedrock_branch_customizes_on_moto_and_promotes(bedrock_fake, dataset, tmp_path):
    base_model, hp = stand_in_hyperparameters("claude", method="bedrock")
    hp.update(epoch_count=3, batch_size=8, early_stopping_patience=3)  # integers through KFP
    _, summary = run_branch(tmp_path, params(dataset, tmp_path, "claude", base_model, hp))
    registry = assert_promoted(tmp_path, summary, "claude-bedrock")
    [job] = bedrock_fake.jobs().values()
    assert {k: job.hyper_parameters[k] for k in ("epochCount", "batchSize", "earlyStoppingPatience")} == {
        "epochCount": "3", "batchSize": "8", "earlyStoppingPatience": "3"}  # Bedrock's strings, not "3.0"
    assert job.status == "Completed" and job.training_data_config["s3Uri"].startswith(
        "s3://tuneloop-bedrock/runs/"
    )
    assert registry.champion().model_ref == job.output_model_arn
    assert registry.champion().model_ref.startswith("arn:aws:bedrock:us-west-2:")
    assert bedrock_fake.answered == len(dataset.splits["eval"])  # evaluated through the runtime stand-in


def test_claude_fewshot_branch_ends_with_a_recorded_decision(anthropic_fake, dataset, tmp_path):
    base_model, hp = stand_in_hyperparameters("claude", method="few-shot")
    hp.update(exemplars_per_label=2, max_exemplars=30)  # integers through KFP
    run_dir, summary = run_branch(tmp_path, params(dataset, tmp_path, "claude", base_model, hp))
    accuracy = summary["candidate_metrics"]["accuracy"]
    blessed = accuracy >= RULES["min_values"]["accuracy"]
    assert summary["decision"]["blessed"] is blessed and "accuracy" in summary["decision"]["reason"]
    assert summary["promoted_version"] == ("v1" if blessed else None)
    assert summary["champion_after"] == ("v1" if blessed else None)
    adapter = json.loads(next(run_dir.rglob("fewshot.json")).read_text())  # the task's model directory
    assert adapter["base_model"] == base_model
    assert len(adapter["exemplars"]) == 2 * len(dataset.labels)  # exemplars_per_label=2 reached the provider
    assert len(anthropic_fake.requests) == len(dataset.splits["eval"])
    if blessed:  # the adapter directory itself was archived in the registry
        record = FileRegistry(str(tmp_path / "registry"), MODEL).get("v1")
        assert record.provider == "claude-few-shot" and record.model_uri


def test_a_failed_provider_job_fails_the_run_with_its_message_and_promotes_nothing(
    openai_fake, dataset, tmp_path
):
    from tests.fakes.openai_server import Plan

    message = "Training file contains 3 examples over the context length."
    for _ in range(4):  # the job and its 3 resubmissions (each a new job key) all fail
        openai_fake.next_job(Plan(fail_message=message))
    base_model, hp = stand_in_hyperparameters("openai")
    with pytest.raises(RuntimeError) as info:
        run("tune-and-promote", params(dataset, tmp_path, "openai", base_model, hp), tmp_path / "runs")
    assert message in str(info.value)  # the provider's own words reach whoever reads the failed run
    assert [j.status for j in openai_fake.jobs.values()] == ["failed"] * 4
    assert FileRegistry(str(tmp_path / "registry"), MODEL).champion() is None
    assert not (tmp_path / "reports").exists()  # evaluate and promote never ran


def test_a_budget_below_the_estimate_is_refused_before_any_upload(openai_fake, dataset, tmp_path):
    base_model, hp = stand_in_hyperparameters("openai")
    hp.pop("budget_usd")
    with pytest.raises(RuntimeError) as info:
        run(
            "tune-and-promote",
            params(dataset, tmp_path, "openai", base_model, hp, budget_usd=0.001),
            tmp_path / "runs",
        )
    assert "is over budget_usd=$0.00" in str(info.value) and "nothing was uploaded" in str(info.value)
    assert openai_fake.files == {} and openai_fake.jobs == {}  # no upload, no job, nothing paid
    assert FileRegistry(str(tmp_path / "registry"), MODEL).champion() is None


def test_a_misspelled_hyperparameter_fails_the_first_task_naming_the_valid_keys(openai_fake, dataset, tmp_path):
    base_model, hp = stand_in_hyperparameters("openai")
    with pytest.raises(RuntimeError) as info:
        run("tune-and-promote", params(dataset, tmp_path, "openai", base_model, {**hp, "n_epoch": 3}),
            tmp_path / "runs")
    message = str(info.value)
    assert "hyperparameters: unknown key 'n_epoch' (did you mean 'n_epochs'?) for the openai provider" in message
    assert "'learning_rate_multiplier'" in message and "'batch_size'" in message  # the valid keys are listed
    assert not list((tmp_path / "runs").rglob("tune-model*"))  # failed before any tune task
    assert openai_fake.files == {} and openai_fake.jobs == {}
