"""Credentials at run time only: the environment, Application Default Credentials, Secret Manager.

A secret is never a pipeline parameter, never written to an artifact and never logged. A provider
asks for it when it builds its client, inside the running task:

* ``get_secret("OPENAI_API_KEY")`` returns the environment variable ``OPENAI_API_KEY`` if set;
  otherwise, if ``OPENAI_API_KEY_SECRET`` names a Secret Manager version
  (``projects/<p>/secrets/<name>/versions/<v>``), that version's payload, read with ADC;
  otherwise it raises :class:`MissingSecret` saying both ways to provide it.
* :func:`google_credentials` returns a static token from ``GOOGLE_OAUTH_ACCESS_TOKEN`` (short-lived,
  e.g. ``gcloud auth print-access-token``) or Application Default Credentials.
* AWS credentials are left to boto3's own chain (environment, profile, instance/task role).
* :func:`apply_task_env` sets a task's environment from the pipeline's ``task_env`` parameter: where to
  find credentials (``OPENAI_API_KEY_SECRET=projects/p/secrets/openai/versions/latest``) and plain
  settings (``AWS_REGION``, ``GOOGLE_CLOUD_LOCATION``), never a credential itself. Vertex AI Pipelines
  gives a task no environment of its own, so this is how a scheduled run finds its keys.

:func:`scan_for_secrets` finds credential-looking strings in text (a CI check over compiled YAML).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_SUFFIX = "_SECRET"
GOOGLE_TOKEN_ENV = "GOOGLE_OAUTH_ACCESS_TOKEN"
SECRET_MANAGER_ENDPOINT_ENV = "TUNELOOP_SECRET_MANAGER_ENDPOINT"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_VERSION_NAME = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")

# Credential shapes with a published prefix or structure (a hit is a leak, whatever the context).
SECRET_PATTERNS: Mapping[str, re.Pattern[str]] = {
    "OpenAI API key": re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    "Anthropic API key": re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    "Google OAuth access token": re.compile(r"\bya29\.[0-9A-Za-z_\-]{20,}"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |)PRIVATE KEY-----"),
    "service account key": re.compile(r"\"private_key_id\"\s*:\s*\"[0-9a-f]{20,}\""),
}
# Names a pipeline parameter must not have: a parameter's value is stored in plain text in the run.
SECRET_PARAMETER_NAME = re.compile(
    r"(?i)(?:^|[_-])(?:api[_-]?key|secret|password|passwd|(?:access|auth|bearer|id)[_-]?token|credentials?"
    r"|private[_-]?key)(?:$|[_-])"
)


class MissingSecret(RuntimeError):
    """A credential is not available in this task's environment; the message says how to provide it."""


def _secret_manager_client():
    from google.cloud import secretmanager

    endpoint = os.environ.get(SECRET_MANAGER_ENDPOINT_ENV)
    if endpoint:  # a private endpoint or a local stand-in: REST transport, same credentials
        return secretmanager.SecretManagerServiceClient(
            credentials=google_credentials()[0], transport="rest", client_options={"api_endpoint": endpoint}
        )
    return secretmanager.SecretManagerServiceClient(credentials=google_credentials()[0])


def read_secret_version(name: str) -> str:
    """The payload of a Secret Manager version ``projects/<p>/secrets/<s>/versions/<v>`` (UTF-8).

    Raises:
        ValueError: ``name`` is not a version resource name.
        MissingSecret: the version cannot be read (the cause is chained).
    """
    if not _VERSION_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a Secret Manager version name; write projects/<project>/secrets/<name>/versions/latest"
        )
    try:
        response = _secret_manager_client().access_secret_version(name=name)
    except Exception as exc:
        raise MissingSecret(
            f"cannot read Secret Manager version {name}: {type(exc).__name__}: {exc}. The task's service account "
            "needs roles/secretmanager.secretAccessor on that secret"
        ) from exc
    data = response.payload.data
    expected = response.payload.data_crc32c
    if expected:
        import google_crc32c

        if google_crc32c.value(data) != expected:
            raise MissingSecret(f"Secret Manager version {name}: the payload failed its CRC32C check; read it again")
    return data.decode("utf-8")


def get_secret(env: str, *, environ: Mapping[str, str] | None = None, required: bool = True) -> str | None:
    """A credential from the environment variable ``env``, or the Secret Manager version named in ``env_SECRET``.

    Args:
        env: the variable, e.g. ``OPENAI_API_KEY``.
        environ: the environment to read (default ``os.environ``).
        required: raise MissingSecret when absent (else return None).

    Raises:
        MissingSecret: neither is set (or the secret cannot be read); the message names both variables.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(env)
    if value:
        return value
    ref = environ.get(env + SECRET_SUFFIX)
    if ref:
        try:
            return read_secret_version(ref.strip())
        except ValueError as exc:
            raise MissingSecret(f"{env + SECRET_SUFFIX}: {exc}") from exc
    if not required:
        return None
    raise MissingSecret(
        f"{env} is not set in this task's environment. Set it (e.g. from a Kubernetes/Vertex secret), or set "
        f"{env + SECRET_SUFFIX}=projects/<project>/secrets/<name>/versions/latest to read it from Secret Manager "
        "with the task's service account. Never pass it as a pipeline parameter"
    )


def google_credentials(environ: Mapping[str, str] | None = None) -> tuple[Any, str | None]:
    """``(credentials, project)``: a static token from GOOGLE_OAUTH_ACCESS_TOKEN, else ADC.

    Raises:
        MissingSecret: no token and no Application Default Credentials.
    """
    environ = os.environ if environ is None else environ
    token = environ.get(GOOGLE_TOKEN_ENV)
    if token:
        from google.oauth2.credentials import Credentials

        return Credentials(token=token), environ.get("GOOGLE_CLOUD_PROJECT") or None
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except DefaultCredentialsError as exc:
        raise MissingSecret(
            "no Google credentials: run on a service account (Vertex AI Pipelines does), run "
            f"`gcloud auth application-default login`, or set {GOOGLE_TOKEN_ENV}"
        ) from exc


# Plain settings a task_env may carry (values are stored in the run's spec: nothing secret).
TASK_ENV_SETTINGS = frozenset({
    "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
    "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "ANTHROPIC_BASE_URL", "GOOGLE_VERTEX_BASE_URL",
})
# Credentials boto3 reads from the environment itself: resolved from Secret Manager into the task's env.
AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def check_task_env(task_env: Mapping[str, Any]) -> dict[str, str]:
    """Validate a ``task_env`` parameter; returns it as ``{name: value}`` strings.

    Allowed: ``<NAME>_SECRET`` set to a Secret Manager version name, and the plain settings in
    :data:`TASK_ENV_SETTINGS`.

    Raises:
        ValueError: another name, a value that is not a version name, or a value that looks like a key.
    """
    if not isinstance(task_env, Mapping):
        raise ValueError(f"task_env must be an object of NAME: value, got {type(task_env).__name__}")
    out: dict[str, str] = {}
    for name, value in task_env.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"task_env.{name}: {value!r} must be a non-empty string")
        if scan_for_secrets(value):
            raise ValueError(
                f"task_env.{name} holds what looks like a credential; pipeline parameters are stored in plain "
                f"text. Put it in Secret Manager and pass {name}{'' if name.endswith(SECRET_SUFFIX) else SECRET_SUFFIX}"
                "=projects/<project>/secrets/<name>/versions/latest instead"
            )
        if name.endswith(SECRET_SUFFIX) and re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            if not _VERSION_NAME.match(value.strip()):
                raise ValueError(
                    f"task_env.{name}={value!r} is not a Secret Manager version name; write "
                    "projects/<project>/secrets/<name>/versions/latest"
                )
        elif name not in TASK_ENV_SETTINGS:
            raise ValueError(
                f"task_env: {name!r} is not allowed; pass <NAME>_SECRET=projects/<p>/secrets/<s>/versions/<v> "
                f"for a credential, or one of the settings {sorted(TASK_ENV_SETTINGS)}"
            )
        out[str(name)] = value.strip()
    return out


def apply_task_env(task_env: Mapping[str, Any] | None, environ: Any = None) -> list[str]:
    """Set this task's environment from ``task_env`` (see :func:`check_task_env`); returns the names set.

    AWS credential references (``AWS_ACCESS_KEY_ID_SECRET`` ...) are read from Secret Manager here,
    because boto3 reads its credentials from the environment and knows nothing of Secret Manager; the
    other ``*_SECRET`` names are read by the provider when it builds its client.
    """
    environ = os.environ if environ is None else environ
    checked = check_task_env(task_env or {})
    environ.update(checked)
    for name in AWS_CREDENTIALS:
        if name + SECRET_SUFFIX in checked:
            environ[name] = get_secret(name, environ={name + SECRET_SUFFIX: checked[name + SECRET_SUFFIX]})
    return sorted(checked)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every given secret value replaced by ``***``."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text


def scan_for_secrets(text: str) -> list[str]:
    """Credential-looking strings in ``text``, as ``"<kind> at line <n>"`` (values not repeated)."""
    hits = []
    for kind, rx in SECRET_PATTERNS.items():
        for m in rx.finditer(text):
            hits.append(f"{kind} at line {text.count(chr(10), 0, m.start()) + 1}")
    return hits


def secret_parameters(pipeline_spec: Mapping[str, Any]) -> list[str]:
    """Input parameters of a compiled pipeline (root and every component) whose names look like secrets."""
    found: list[str] = []

    def visit(where: str, node: Any) -> None:
        if isinstance(node, Mapping):
            params = node.get("inputDefinitions", {}).get("parameters", {}) if "inputDefinitions" in node else {}
            for name in params:
                if SECRET_PARAMETER_NAME.search(name):
                    found.append(f"{where}: parameter {name!r}")
            for k, v in node.items():
                visit(f"{where}.{k}" if where else str(k), v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                visit(f"{where}[{i}]", v)

    visit("", pipeline_spec)
    return found


# -- does a hosted provider have a credential? (the run's first task asks) --------------------------------

# The credential kinds a provider declares (``Provider.credential``): an API key's variable name, or one
# of these two.
GOOGLE_ADC = "google"
AWS_CHAIN = "aws"
_SECRET_EXAMPLE = "projects/<project>/secrets/<name>/versions/latest"


def credential_kind(provider: str, method: str | None = None) -> str | None:
    """The credential a provider declares (``Provider.credential``): an API key's variable name
    (``OPENAI_API_KEY``), ``google`` (ADC or a token) or ``aws`` (boto3's chain); None when it needs none.

    ``method`` is ``hyperparameters.method`` for a family name (``claude`` + ``bedrock``). An unknown
    provider needs nothing here (the first task refuses it by name).
    """
    from tuneloop.providers.registry import ProviderNotFound, provider_class

    try:
        return provider_class(provider, {"method": method} if method else None).credential
    except ProviderNotFound:
        return None


def check_credentials(
    provider: str,
    task_env: Mapping[str, Any] | None = None,
    *,
    method: str | None = None,
    environ: Mapping[str, str] | None = None,
    on_vertex: bool = False,
) -> str:
    """Fail unless the provider's credential has a source; returns where it comes from ("" = none needed).

    Sources, per provider (``task_env`` is the pipeline parameter; ``environ`` this task's environment):

    * openai: ``OPENAI_API_KEY`` in the environment, or ``OPENAI_API_KEY_SECRET`` (a Secret Manager
      version) in ``task_env`` or the environment;
    * claude (few-shot, the Anthropic API): ``ANTHROPIC_API_KEY`` or ``ANTHROPIC_API_KEY_SECRET``, alike;
    * claude (``method=bedrock``): AWS credentials from boto3's chain (environment, profile, role), or
      ``AWS_ACCESS_KEY_ID_SECRET`` + ``AWS_SECRET_ACCESS_KEY_SECRET`` in ``task_env``;
    * gemini: ``GOOGLE_OAUTH_ACCESS_TOKEN``, or Application Default Credentials.

    ``on_vertex=True`` checks for a task that will run on Vertex AI Pipelines (the upload trigger's
    check): the task gets no environment but ``task_env``, its ADC are the run's service account, and
    it has no AWS role. Nothing is read from Secret Manager here; the names are checked.

    Raises:
        ValueError: ``task_env`` is malformed (see :func:`check_task_env`).
        MissingSecret: no source; the message names both ways to provide the credential.
    """
    kind = credential_kind(provider, method)
    env = check_task_env(task_env or {})
    environ = ({} if on_vertex else os.environ) if environ is None else environ
    if kind is None:
        return ""
    if kind not in (GOOGLE_ADC, AWS_CHAIN):
        var = kind
        ref = var + SECRET_SUFFIX
        if environ.get(var):
            return f"{var} (environment)"
        if env.get(ref) or environ.get(ref):
            return f"{ref} (Secret Manager)"
        where = "the task's environment (Vertex gives a task none)" if on_vertex else "this task's environment"
        raise MissingSecret(
            f"provider {provider!r} has no credential: {var} is not set in {where} and task_env has no {ref}. "
            f"Either set {var} where the task runs, or store the key in Secret Manager and pass "
            f'task_env={{"{ref}": "{_SECRET_EXAMPLE}"}} (the run\'s service account needs '
            "roles/secretmanager.secretAccessor on it)"
        )
    if kind == AWS_CHAIN:
        pair = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        refs = [p + SECRET_SUFFIX for p in pair]
        given = [r for r in refs if env.get(r) or environ.get(r)]
        if len(given) == 2:
            return "AWS_ACCESS_KEY_ID_SECRET + AWS_SECRET_ACCESS_KEY_SECRET (Secret Manager)"
        if len(given) == 1:
            lacking = next(r for r in refs if r not in given)
            raise MissingSecret(
                f"provider {provider!r} (Bedrock): task_env has {given[0]} but not {lacking}; "
                f'add {lacking}="{_SECRET_EXAMPLE}"'
            )
        if all(environ.get(p) for p in pair):
            return "AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (environment)"
        if not on_vertex and _boto3_has_credentials(environ):
            return "boto3's credential chain (profile or role)"
        raise MissingSecret(
            f"provider {provider!r} (Bedrock) has no AWS credentials: boto3 finds none in "
            f"{'a Vertex task (no environment, no AWS role)' if on_vertex else 'this environment, profile or role'}. "
            "Either give the task AWS credentials (environment, profile or role), or store the key pair in "
            f'Secret Manager and pass task_env={{"AWS_ACCESS_KEY_ID_SECRET": "{_SECRET_EXAMPLE}", '
            f'"AWS_SECRET_ACCESS_KEY_SECRET": "{_SECRET_EXAMPLE}", "AWS_REGION": "us-east-1"}}'
        )
    # GOOGLE_ADC
    if environ.get(GOOGLE_TOKEN_ENV):
        return f"{GOOGLE_TOKEN_ENV} (environment)"
    if on_vertex:
        return "Application Default Credentials (the run's service account)"
    try:
        google_credentials(environ)
    except MissingSecret as exc:
        raise MissingSecret(
            f"provider {provider!r} has no Google credentials: no Application Default Credentials and no "
            f"{GOOGLE_TOKEN_ENV}. Either run `gcloud auth application-default login` (on Vertex the run's "
            f"service account provides them), or set {GOOGLE_TOKEN_ENV} (e.g. from `gcloud auth "
            "print-access-token`)"
        ) from exc
    return "Application Default Credentials"


def _boto3_has_credentials(environ: Mapping[str, str]) -> bool:
    try:
        import boto3
    except ImportError:
        return False
    try:
        return boto3.Session().get_credentials() is not None
    except Exception:  # noqa: BLE001 - a broken profile is "no credentials" here
        return False
