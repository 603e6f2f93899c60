"""check_credentials: a hosted provider with no credential source fails naming both ways to give one."""

from __future__ import annotations

import pytest

from tuneloop.secrets import MissingSecret, check_credentials

SECRET = "projects/p/secrets/{}/versions/latest"


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch, tmp_path):
    for var in ("OPENAI_API_KEY", "OPENAI_API_KEY_SECRET", "ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY_SECRET",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "GOOGLE_OAUTH_ACCESS_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")


@pytest.mark.parametrize(
    "provider, method, var",
    [("openai", None, "OPENAI_API_KEY"), ("claude", None, "ANTHROPIC_API_KEY"), ("claude", "few-shot", "ANTHROPIC_API_KEY")],
)
def test_api_key_providers_take_the_key_or_its_secret_and_name_both(provider, method, var, monkeypatch):
    with pytest.raises(MissingSecret) as info:
        check_credentials(provider, {}, method=method)
    message = str(info.value)
    assert f"{var} is not set" in message and f"{var}_SECRET" in message and "task_env" in message
    assert check_credentials(provider, {f"{var}_SECRET": SECRET.format("k")}, method=method) == f"{var}_SECRET (Secret Manager)"
    monkeypatch.setenv(var, "k-123")
    assert check_credentials(provider, {}, method=method) == f"{var} (environment)"
    # a Vertex task sees none of this machine's environment
    with pytest.raises(MissingSecret, match="Vertex gives a task none"):
        check_credentials(provider, {}, method=method, on_vertex=True)


def test_bedrock_takes_the_aws_chain_or_both_secrets(monkeypatch):
    with pytest.raises(MissingSecret) as info:
        check_credentials("claude", {}, method="bedrock")
    assert "AWS_ACCESS_KEY_ID_SECRET" in str(info.value) and "profile or role" in str(info.value)
    with pytest.raises(MissingSecret, match="not AWS_SECRET_ACCESS_KEY_SECRET"):
        check_credentials("claude", {"AWS_ACCESS_KEY_ID_SECRET": SECRET.format("id")}, method="bedrock")
    both = {"AWS_ACCESS_KEY_ID_SECRET": SECRET.format("id"), "AWS_SECRET_ACCESS_KEY_SECRET": SECRET.format("key")}
    assert "Secret Manager" in check_credentials("claude", both, method="bedrock", on_vertex=True)
    assert "Secret Manager" in check_credentials("claude-bedrock", both)  # the provider family's own name
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert "environment" in check_credentials("claude", {}, method="bedrock")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    (tmp := __import__("pathlib").Path(__import__("os").environ["AWS_SHARED_CREDENTIALS_FILE"])).write_text(
        "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n")
    assert tmp.exists() and "chain" in check_credentials("claude", {}, method="bedrock")


def test_gemini_takes_adc_or_a_token(monkeypatch):
    with pytest.raises(MissingSecret) as info:
        check_credentials("gemini", {})
    assert "gcloud auth application-default login" in str(info.value) and "GOOGLE_OAUTH_ACCESS_TOKEN" in str(info.value)
    assert "service account" in check_credentials("gemini", {}, on_vertex=True)
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.example")
    assert check_credentials("gemini", {}) == "GOOGLE_OAUTH_ACCESS_TOKEN (environment)"


def test_local_providers_need_nothing_and_a_bad_task_env_is_refused():
    assert check_credentials("sklearn", {}) == "" and check_credentials("oss-lora", {}) == ""
    with pytest.raises(ValueError, match="task_env.OPENAI_API_KEY_SECRET"):
        check_credentials("openai", {"OPENAI_API_KEY_SECRET": "my-key"})
