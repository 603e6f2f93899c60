"""The shared hosted-provider machinery: Retry-After, deadlines, request caps (real HTTP, real SDK)."""

from __future__ import annotations

import email.utils
import random

import pytest

from tests.fakes.server import Fault
from tests.unit.hosted.conftest import FAST_PREDICT, quiet
from tuneloop.config import from_mapping
from tuneloop.providers.base import ProviderError
from tuneloop.providers.hosted import (
    DeadlineExceeded,
    Poller,
    PollPolicy,
    PredictPolicy,
    RetryPolicy,
    parse_retry_after,
)
from tuneloop.providers.openai import OpenAIProvider


def test_retry_after_forms():
    now = 1_800_000_000.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    date = email.utils.formatdate(now + 20, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(20, abs=1)
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


def test_backoff_grows_is_capped_and_jittered_down_only():
    policy = RetryPolicy(initial_s=1, max_s=8, multiplier=2, jitter=0.5)
    rng = random.Random(0)
    delays = [policy.backoff(n, rng) for n in range(1, 8)]
    caps = [1, 2, 4, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, caps, strict=True))
    with pytest.raises(ValueError, match=r"attempts=0 must be an integer in \[1, 100\]"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="eval_options: unknown key 'workers'"):
        from_mapping(PredictPolicy, {"workers": 3}, what="eval_options")


def test_a_server_asking_for_a_long_wait_fails_fast_with_the_reason(openai_fake):
    openai_fake.http.inject("jobs.list", Fault(429, retry_after="3600"))
    waits: list[float] = []
    with pytest.raises(ProviderError, match="asks to wait 3600s, longer than max_retry_after_s=600"):
        OpenAIProvider(log=quiet, sleep=waits.append).resume("tl-x")
    assert waits == []


def test_retries_exhausted_names_the_call_and_the_status(openai_fake):
    openai_fake.http.inject("jobs.list", *[Fault(503, retry_after="0")] * 6)
    with pytest.raises(ProviderError, match=r"list jobs by key: still failing after 6 attempts \(HTTP 503"):
        OpenAIProvider(log=quiet, sleep=lambda s: None).resume("tl-x")
    assert openai_fake.http.calls("jobs.list") == 6


def test_client_errors_are_not_retried(openai_fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "wrong-key")
    with pytest.raises(ProviderError, match="HTTP 401: Incorrect API key"):
        OpenAIProvider(log=quiet).resume("tl-x")
    assert openai_fake.http.calls("jobs.list") == 1


def test_poller_stops_at_the_deadline_and_says_how_to_resume():
    slept: list[float] = []
    poller = Poller(PollPolicy(initial_s=5, max_s=60), deadline_s=0.0, what="job j", sleep=slept.append)
    with pytest.raises(DeadlineExceeded, match="job j is still 'running' after the 0s deadline; rerun the task"):
        poller.pause("running")
    poller = Poller(PollPolicy(initial_s=5, max_s=7, jitter=0), deadline_s=3600, what="job j", sleep=slept.append)
    for _ in range(3):
        poller.pause("running")
    assert slept == [5, 7, 7]


def test_prediction_cap_counts_retries(openai_fake):
    from tests.fakes.data import support_messages
    from tests.fakes.openai_server import BASE_MODELS

    rows = support_messages(3)
    openai_fake.http.inject("chat.create", *[Fault(500)] * 4)
    p = OpenAIProvider(predict={**FAST_PREDICT, "concurrency": 1, "max_requests": 5}, log=quiet)
    with pytest.raises(ProviderError, match="request cap reached: 5 requests sent, max_requests=5"):
        p.predict(BASE_MODELS[0], rows)
    assert openai_fake.http.calls("chat.create") == 5
