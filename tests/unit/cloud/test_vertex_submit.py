"""`tuneloop submit` and `tuneloop schedule` against a stand-in of the Vertex AI REST API, real aiplatform."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT
from tuneloop import cloud
from tuneloop.attempts import MAX_ATTEMPTS
from tuneloop.cli import app
from tuneloop.version import __version__

EXPORT_YAML = str(ROOT / "compile" / "export-dataset.yaml")
TUNE_YAML = str(ROOT / "compile" / "tune-and-promote.yaml")
PROJECT, REGION = "tuneloop-test", "us-central1"
REPO = f"{REGION}-docker.pkg.dev/{PROJECT}/tuneloop"


@pytest.fixture(autouse=True)
def image_repository(monkeypatch):
    """The images the user pushed (make images IMAGE_REPOSITORY=...)."""
    monkeypatch.setenv("TUNELOOP_IMAGE_REPOSITORY", REPO)
    monkeypatch.delenv("TUNELOOP_IMAGE_LOCK", raising=False)


def _cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _images(job) -> set[str]:
    return {e["container"]["image"] for e in job["pipelineSpec"]["deploymentSpec"]["executors"].values()}


def test_submit_sends_the_compiled_pipeline_with_parameters_account_and_images(vertex, gcs):
    code, out = _cli(
        "submit",
        EXPORT_YAML,
        "--project",
        PROJECT,
        "--region",
        REGION,
        "--pipeline-root",
        f"{gcs}/root",
        "--service-account",
        f"runner@{PROJECT}.iam.gserviceaccount.com",
        "--job-id",
        "export-1",
        "-p",
        f"warehouse_uri=bigquery://{PROJECT}/interactions",
        "-p",
        f"dataset_root={gcs}/data",
        "-p",
        "min_new_examples=50",
        "--label",
        "team=support",
    )
    assert code == 0, out
    assert json.loads(out)["created"] is True
    job = vertex.jobs[f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/export-1"]
    assert job["serviceAccount"] == f"runner@{PROJECT}.iam.gserviceaccount.com"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == f"{gcs}/root"
    assert job["runtimeConfig"]["parameterValues"]["min_new_examples"] == 50
    assert job["labels"] == {"app": "tuneloop", "team": "support"}
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert tasks and all(t["cachingOptions"].get("enableCache", False) is False for t in tasks.values())
    assert _images(job) == {f"{REPO}/tuneloop-base:{__version__}"}  # the setting reached every task


def _task_caching(job) -> dict[str, bool]:
    spec = job["pipelineSpec"]
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    return {
        name: bool(t.get("cachingOptions", {}).get("enableCache", False))
        for dag in dags for name, t in dag["tasks"].items() if "executorLabel" in spec["components"][t["componentRef"]["name"]]
    }


def test_caching_follows_the_template_whatever_its_name(vertex, gcs, tmp_path):
    renamed = tmp_path / "nightly-support.yaml"  # not a tuneloop file name: the compiled settings decide
    renamed.write_text(open(TUNE_YAML).read())
    common = ["--project", PROJECT, "--pipeline-root", f"{gcs}/root", "-p", f"dataset_uri={gcs}/d",
              "-p", f"registry_uri={gcs}/r"]
    code, out = _cli("submit", renamed, *common, "--job-id", "renamed-1")
    assert code == 0, out
    caching = _task_caching(vertex.jobs[json.loads(out)["resource_name"]])
    assert caching["tune-model"] is True and caching["evaluate-model"] is False
    assert caching["promote-model"] is False and caching["check-config"] is False
    code, out = _cli("submit", renamed, *common, "--job-id", "renamed-2", "--no-cache")
    assert code == 0, out
    assert set(_task_caching(vertex.jobs[json.loads(out)["resource_name"]]).values()) == {False}
    with pytest.raises(ValueError, match="enable_caching=True would cache every task"):
        cloud.submit_pipeline(TUNE_YAML, cloud.VertexTarget(PROJECT, REGION, f"{gcs}/root"),
                              {"dataset_uri": "x", "registry_uri": "y"}, enable_caching=True)


def test_unknown_and_missing_parameters_are_refused_before_submitting(vertex, gcs):
    before = vertex.calls("pipelineJobs.create")
    common = ["--project", PROJECT, "--pipeline-root", f"{gcs}/root"]
    code, out = _cli("submit", EXPORT_YAML, *common, "-p", "warehouse=bq://x", "-p", f"dataset_root={gcs}/d")
    assert code == 2 and "no parameter 'warehouse' (did you mean 'warehouse_uri'?)" in out and "'table'" in out
    code, out = _cli("submit", EXPORT_YAML, *common, "-p", f"dataset_root={gcs}/d")
    assert code == 2 and "needs -p warehouse_uri=..." in out
    assert vertex.calls("pipelineJobs.create") == before


def test_the_placeholder_images_are_refused(vertex, gcs, monkeypatch):
    monkeypatch.delenv("TUNELOOP_IMAGE_REPOSITORY")
    code, out = _cli("submit", EXPORT_YAML, "--project", PROJECT, "--pipeline-root", f"{gcs}/root",
                     "-p", "warehouse_uri=x", "-p", "dataset_root=y")
    assert code == 2 and "placeholder" in out and "--image-repository" in out


def test_submit_without_google_credentials_is_one_line_naming_the_login(gcs, monkeypatch, tmp_path):
    monkeypatch.delenv("TUNELOOP_VERTEX_ENDPOINT", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    code, out = _cli("submit", EXPORT_YAML, "--project", PROJECT, "--pipeline-root", f"{gcs}/root",
                     "-p", "warehouse_uri=x", "-p", "dataset_root=y")
    assert code == 1
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "gcloud auth application-default login" in lines[0], out
    assert "Traceback" not in out and "DefaultCredentialsError" not in out


def test_a_template_with_gpu_constants_takes_no_gpu_parameters(vertex, gcs, tmp_path):
    code, out = _cli("compile", "--out", tmp_path, "--pipeline", "tune-and-promote", "--gpu", "NVIDIA_A100_80GB:2")
    assert code == 0, out
    compiled = tmp_path / "tune-and-promote.yaml"
    common = ["--project", PROJECT, "--pipeline-root", f"{gcs}/root", "-p", "dataset_uri=d", "-p", "registry_uri=r"]
    code, out = _cli("submit", compiled, *common, "-p", "accelerator_type=NVIDIA_L4")
    assert code == 2 and "no parameter 'accelerator_type'" in out
    code, out = _cli("submit", compiled, *common, "--job-id", "gpu-constants")
    assert code == 0, out
    executors = vertex.jobs[json.loads(out)["resource_name"]]["pipelineSpec"]["deploymentSpec"]["executors"]
    resources = [e["container"]["resources"] for name, e in executors.items()
                 if name.startswith("exec-tune-model") and "resources" in e["container"]]
    assert len(resources) == MAX_ATTEMPTS  # the GPU branch's tune task of each unrolled attempt
    for res in resources:
        assert res["accelerator"] == {"type": "NVIDIA_A100_80GB", "count": "2", "resourceType": "NVIDIA_A100_80GB",
                                      "resourceCount": "2"}


def test_the_same_job_id_twice_starts_one_run(vertex, target):
    params = {"warehouse_uri": f"bigquery://{PROJECT}/ds", "dataset_root": "gs://b/data"}
    first = cloud.submit_pipeline(EXPORT_YAML, target, params, job_id="same-run")
    second = cloud.submit_pipeline(EXPORT_YAML, target, params, job_id="same-run")
    assert (first.created, second.created) == (True, False)
    assert first.resource_name == second.resource_name
    assert (
        vertex.calls("pipelineJobs.create") >= 2
        and len([j for j in vertex.jobs if j.endswith("/same-run")]) == 1
    )


def test_a_pipeline_name_is_compiled_on_the_fly(vertex, gcs):
    code, out = _cli(
        "submit",
        "export-dataset",
        "--project",
        PROJECT,
        "--pipeline-root",
        f"{gcs}/root",
        "-p",
        "warehouse_uri=duckdb:///w.duckdb",
        "-p",
        f"dataset_root={gcs}/d",
    )
    assert code == 0, out
    assert (
        vertex.jobs[json.loads(out)["resource_name"]]["pipelineSpec"]["pipelineInfo"]["name"]
        == "export-dataset"
    )


def test_credentials_never_travel_as_parameters(vertex, target):
    with pytest.raises(ValueError, match="openai_api_key.*Secret Manager"):
        cloud.submit_pipeline(EXPORT_YAML, target, {"openai_api_key": "sk-123"}, job_id="leak")
    assert not any(j.endswith("/leak") for j in vertex.jobs)


def test_bad_targets_name_the_option():
    with pytest.raises(ValueError, match="pipeline_root='/tmp/x' must be a gs://"):
        cloud.VertexTarget(PROJECT, REGION, "/tmp/x")
    with pytest.raises(ValueError, match="region='Europe'"):
        cloud.VertexTarget(PROJECT, "Europe", "gs://b/r")


def test_schedule_create_list_pause_resume_delete(vertex, gcs):
    common = ["--project", PROJECT, "--region", REGION]
    code, out = _cli(
        "schedule",
        "create",
        EXPORT_YAML,
        *common,
        "--pipeline-root",
        f"{gcs}/root",
        "--name",
        "nightly-export",
        "--cron",
        "30 2 * * *",
        "--time-zone",
        "Europe/Berlin",
        "-p",
        f"warehouse_uri=bigquery://{PROJECT}/ds",
        "-p",
        f"dataset_root={gcs}/data",
    )
    assert code == 0, out
    created = json.loads(out)
    assert created["cron"] == "TZ=Europe/Berlin 30 2 * * *"
    assert created["max_concurrent_run_count"] == 1 and created["allow_queueing"] is False
    stored = vertex.schedules[created["resource_name"]]
    assert (
        stored["createPipelineJobRequest"]["pipelineJob"]["runtimeConfig"]["parameterValues"]["dataset_root"]
        == f"{gcs}/data"
    )

    code, out = _cli(
        "schedule",
        "create",
        EXPORT_YAML,
        *common,
        "--pipeline-root",
        f"{gcs}/root",
        "--name",
        "nightly-export",
        "-p",
        "warehouse_uri=x",
        "-p",
        "dataset_root=y",
    )
    assert code == 1 and "exists" in out  # a second schedule would export twice

    code, out = _cli("schedule", "list", *common)
    assert [s["display_name"] for s in json.loads(out)] == ["nightly-export"]
    code, out = _cli("schedule", "pause", "nightly-export", *common)
    assert code == 0 and json.loads(out)["state"] == "PAUSED"
    code, out = _cli("schedule", "resume", "nightly-export", *common)
    assert code == 0 and json.loads(out)["state"] == "ACTIVE"
    assert vertex.resumes[-1] == {"name": created["resource_name"], "catchUp": False}
    code, out = _cli("schedule", "delete", "nightly-export", *common)
    assert code == 0 and json.loads(out)["deleted"] == created["resource_name"]
    code, out = _cli("schedule", "list", *common)
    assert json.loads(out) == []
    code, out = _cli("schedule", "pause", "nightly-export", *common)
    assert code == 1 and "no schedule with that name" in out


@pytest.mark.parametrize(
    "cron, tz, message",
    [
        ("0 3 * *", "UTC", "5 fields"),
        ("0 3 * * *", "Mars/Olympus", "not an IANA time zone"),
        ("TZ=UTC 0 3 * * *", "UTC", "time zone separately"),
    ],
)
def test_bad_cron_or_time_zone_is_refused_before_any_request(cron, tz, message):
    with pytest.raises(ValueError, match=message):
        cloud.cron_with_time_zone(cron, tz)


def test_job_ids_follow_the_dataset_and_the_run_identity():
    h = "ab" * 32
    a = cloud.pipeline_job_id("tune-and-promote", h, key={"provider": "sklearn"})
    assert a == cloud.pipeline_job_id("tune-and-promote", h, key={"provider": "sklearn"})
    assert a.startswith("tune-and-promote-" + h[:32])
    assert a != cloud.pipeline_job_id("tune-and-promote", h, key={"provider": "oss-lora"})
    assert a != cloud.pipeline_job_id("tune-and-promote", "cd" * 32, key={"provider": "sklearn"})
