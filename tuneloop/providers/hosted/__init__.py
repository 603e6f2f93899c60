"""What the hosted (remote, paid) providers share, one concern per module.

* :mod:`.retry` — :func:`call` runs one SDK call and retries transient failures (HTTP 408/429/5xx,
  connection errors) with backoff and jitter, honouring ``Retry-After``; the SDKs' own retries are off.
* :mod:`.poll` — :class:`Poller` spaces the status polls of a job under a deadline; :class:`EventLog`
  logs each provider event once.
* :mod:`.predict` — :func:`predict_all` asks a model about many examples with bounded concurrency,
  retries and a per-run request cap (:class:`PredictPolicy`, the ``eval_options`` parameter).
* :mod:`.preflight` — a retired, unknown or non-tunable model, an over-limit dataset or an estimate
  over the run's budget is refused before anything is uploaded.
* :mod:`.config` — :class:`HostedConfig`, the settings every hosted provider's config extends.
* :mod:`.provider` — :class:`HostedProvider`, their base class.

Nothing here imports a provider SDK; each provider module imports only its own.
"""

from tuneloop.providers.hosted.config import HostedConfig
from tuneloop.providers.hosted.poll import EventLog, Poller, PollPolicy
from tuneloop.providers.hosted.predict import (
    FATAL_PREDICT_STATUSES,
    OPENING_TURN,
    PredictPolicy,
    PredictStats,
    RequestCapReached,
    RequestCounter,
    alternating,
    predict_all,
    prompt_messages,
)
from tuneloop.providers.hosted.preflight import (
    check_budget,
    check_file,
    check_model,
    load_catalog_for,
    read_bytes,
    resolve_file,
)
from tuneloop.providers.hosted.provider import HostedProvider
from tuneloop.providers.hosted.retry import (
    RETRY_STATUSES,
    DeadlineExceeded,
    Failure,
    RetryPolicy,
    call,
    classify,
    describe,
    parse_retry_after,
)

__all__ = [
    "FATAL_PREDICT_STATUSES", "OPENING_TURN", "RETRY_STATUSES", "DeadlineExceeded", "EventLog", "Failure", "HostedConfig",
    "HostedProvider", "PollPolicy", "Poller", "PredictPolicy", "PredictStats", "RequestCapReached",
    "RequestCounter", "RetryPolicy", "alternating", "call", "check_budget", "check_file", "check_model", "classify", "describe",
    "load_catalog_for", "parse_retry_after", "predict_all", "prompt_messages", "read_bytes", "resolve_file",
]
