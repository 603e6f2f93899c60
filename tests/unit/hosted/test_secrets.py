"""Credentials come from the environment or Secret Manager at run time, never from parameters."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from tests.fakes.secret_manager_server import FakeSecretManager
from tuneloop import secrets
from tuneloop.config import ConfigError, from_mapping
from tuneloop.providers.claude import BedrockConfig, FewShotConfig
from tuneloop.providers.gemini import GeminiConfig
from tuneloop.providers.openai import OpenAIConfig, OpenAIProvider

ROOT = Path(__file__).resolve().parents[3]
SECRET_REF = "projects/tuneloop-test/secrets/openai-api-key/versions/latest"


@pytest.fixture
def secret_manager(monkeypatch):
    server = FakeSecretManager().start()
    monkeypatch.setenv(secrets.SECRET_MANAGER_ENDPOINT_ENV, server.url)
    monkeypatch.setenv(secrets.GOOGLE_TOKEN_ENV, "test-access-token")
    yield server
    server.stop()


def test_environment_value_wins_and_absence_names_both_ways():
    assert secrets.get_secret("OPENAI_API_KEY", environ={"OPENAI_API_KEY": "from-env"}) == "from-env"
    assert secrets.get_secret("OPENAI_API_KEY", environ={}, required=False) is None
    with pytest.raises(secrets.MissingSecret, match=r"OPENAI_API_KEY is not set.*OPENAI_API_KEY_SECRET=projects/"):
        secrets.get_secret("OPENAI_API_KEY", environ={})
    with pytest.raises(secrets.MissingSecret, match="is not a Secret Manager version name"):
        secrets.get_secret("OPENAI_API_KEY", environ={"OPENAI_API_KEY_SECRET": "openai-api-key"})


def test_secret_manager_version_is_read_at_run_time(secret_manager, openai_fake, monkeypatch):
    from tests.fakes.openai_server import API_KEY

    secret_manager.add("projects/tuneloop-test/secrets/openai-api-key", "sk-old-rotated-away")
    secret_manager.add("projects/tuneloop-test/secrets/openai-api-key", API_KEY)
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY_SECRET", SECRET_REF)
    assert secrets.get_secret("OPENAI_API_KEY") == API_KEY  # latest version
    assert OpenAIProvider(log=lambda _: None).resume("tl-none") is None  # the fake accepted the key
    assert secret_manager.http.calls("versions.access") == 2


def test_secret_manager_failures_are_explained(secret_manager, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY_SECRET", "projects/tuneloop-test/secrets/missing/versions/latest")
    with pytest.raises(secrets.MissingSecret, match="secretmanager.secretAccessor"):
        secrets.get_secret("ANTHROPIC_API_KEY")
    secret_manager.add("projects/tuneloop-test/secrets/k", "value")
    secret_manager.corrupt = True
    with pytest.raises(secrets.MissingSecret, match="CRC32C"):
        secrets.read_secret_version("projects/tuneloop-test/secrets/k/versions/1")


def test_task_env_points_a_vertex_task_at_its_credentials(secret_manager, monkeypatch):
    """Vertex gives a task no environment: the pipeline's task_env says where the keys are."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    secret_manager.add("projects/tuneloop-test/secrets/aws-key-id", "AKIAFAKEKEYFORTESTS1")
    secret_manager.add("projects/tuneloop-test/secrets/aws-secret", "fake-secret-access-key")
    env: dict[str, str] = {}
    monkeypatch.setattr(secrets.os, "environ", env)  # this test's own environment, as a task's
    env.update({secrets.SECRET_MANAGER_ENDPOINT_ENV: secret_manager.url, secrets.GOOGLE_TOKEN_ENV: "tok"})
    applied = secrets.apply_task_env({
        "AWS_ACCESS_KEY_ID_SECRET": "projects/tuneloop-test/secrets/aws-key-id/versions/latest",
        "AWS_SECRET_ACCESS_KEY_SECRET": "projects/tuneloop-test/secrets/aws-secret/versions/latest",
        "AWS_REGION": "us-west-2",
    })
    assert applied == ["AWS_ACCESS_KEY_ID_SECRET", "AWS_REGION", "AWS_SECRET_ACCESS_KEY_SECRET"]
    assert env["AWS_ACCESS_KEY_ID"] == "AKIAFAKEKEYFORTESTS1" and env["AWS_REGION"] == "us-west-2"
    assert env["AWS_SECRET_ACCESS_KEY"] == "fake-secret-access-key"
    import boto3

    creds = boto3.Session().get_credentials()  # boto3's own chain now finds them
    assert creds.access_key == "AKIAFAKEKEYFORTESTS1"


@pytest.mark.parametrize(
    ("task_env", "message"),
    [
        ({"OPENAI_API_KEY": "sk-proj-abcdefghijklmnopqrstuvwxyz"}, "looks like a credential"),
        ({"PATH": "/bin"}, "'PATH' is not allowed"),
        ({"OPENAI_API_KEY_SECRET": "my-key"}, "not a Secret Manager version name"),
        ({"AWS_REGION": ""}, "must be a non-empty string"),
    ],
)
def test_task_env_refuses_anything_but_references_and_settings(task_env, message):
    with pytest.raises(ValueError, match=message):
        secrets.check_task_env(task_env)


def test_google_token_from_environment():
    creds, project = secrets.google_credentials({"GOOGLE_OAUTH_ACCESS_TOKEN": "tok", "GOOGLE_CLOUD_PROJECT": "p"})
    assert creds.token == "tok" and creds.valid and project == "p"


def test_no_provider_setting_can_carry_a_secret():
    for cfg in (OpenAIConfig, GeminiConfig, BedrockConfig, FewShotConfig):
        names = [f.name for f in dataclasses.fields(cfg)]
        assert not [n for n in names if secrets.SECRET_PARAMETER_NAME.search(n)], cfg
        with pytest.raises(ConfigError, match=r"unknown key 'api_key'"):
            from_mapping(cfg, {"api_key": "sk-nope"})


def test_scanner_finds_leaks_and_secret_named_parameters():
    leaked = "params:\n  key: sk-proj-abcdefghijklmnopqrstuvwxyz012345\n  aws: AKIAIOSFODNN7EXAMPLE\n"
    assert secrets.scan_for_secrets(leaked) == ["OpenAI API key at line 2", "AWS access key id at line 3"]
    spec = {"root": {"inputDefinitions": {"parameters": {"openai_api_key": {}, "max_output_tokens": {},
                                                          "hyperparameters": {}}}}}
    assert secrets.secret_parameters(spec) == ["root: parameter 'openai_api_key'"]
    assert secrets.redact("key=abcd1234 and abcd1234", ["abcd1234"]) == "key=*** and ***"


COMPILED = sorted((ROOT / "compile").glob("*.yaml"))


@pytest.mark.parametrize("path", COMPILED, ids=[p.name for p in COMPILED])
def test_compiled_pipelines_hold_no_secrets(path):
    text = path.read_text()
    assert secrets.scan_for_secrets(text) == [], f"{path.name} contains credential-looking strings"
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict):
            assert secrets.secret_parameters(doc) == [], f"{path.name} has secret-named parameters"
