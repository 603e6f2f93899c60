"""The base class of the hosted providers: their evaluation policy, request cap, log and sleep."""

from __future__ import annotations

import time

from tuneloop.config import from_mapping
from tuneloop.providers.base import Provider
from tuneloop.providers.hosted.predict import PredictPolicy, PredictStats, RequestCounter
from tuneloop.providers.hosted.retry import Log


class HostedProvider(Provider):
    """The part every hosted provider shares: its evaluation policy, request cap, log and sleep."""

    def _init_common(self, output_dir: str | None, predict, log: Log, sleep) -> None:
        """Set what every hosted provider's constructor takes (``predict``: PredictPolicy or its fields)."""
        self.predict_policy = predict if isinstance(predict, PredictPolicy) else from_mapping(PredictPolicy, predict, what="eval_options")
        self.counter = RequestCounter(self.predict_policy.max_requests)
        self.output_dir = output_dir or None
        self.log = log
        self.sleep = sleep or time.sleep
        self.last_predict: PredictStats | None = None
