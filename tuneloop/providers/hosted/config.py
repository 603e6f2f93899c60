"""The settings every hosted provider reads from ``hyperparameters`` (each provider's config adds its own)."""

from __future__ import annotations

from dataclasses import dataclass

from tuneloop.config import check_number, setting
from tuneloop.providers.hosted.poll import PollPolicy
from tuneloop.providers.hosted.retry import RetryPolicy


@dataclass(frozen=True)
class HostedConfig:
    """Settings every hosted provider reads from ``hyperparameters`` (subclasses add their own).

    None of these enters the job key: they say how the run goes, not what is trained, so a rerun that
    only changes the budget or the polling adopts the job already paid for.
    """

    budget_usd: float | None = setting(
        None, job_key=False,
        help="the most this run may spend on training; preflight refuses a larger estimate. Required for a "
        "priced model: an unattended run never spends without a cap",
    )
    allow_unpriced: bool = setting(
        False, job_key=False, help="let a model without a published price run (its cost cannot be checked)"
    )
    catalog: str = setting("", job_key=False, help="a model catalog YAML to use instead of the packaged one")
    deadline_s: float = setting(
        24 * 3600.0, job_key=False,
        help="stop waiting for the job after this long (the job keeps running and a rerun resumes it, "
        "unless cancel_on_deadline)",
    )
    cancel_on_deadline: bool = setting(False, job_key=False, help="cancel the remote job when the deadline passes")
    poll_initial_s: float = setting(15.0, job_key=False, help="first delay between status polls, seconds")
    poll_max_s: float = setting(300.0, job_key=False, help="longest delay between status polls, seconds")
    retry_attempts: int = setting(6, job_key=False, help="tries of each API call")
    retry_initial_s: float = setting(1.0, job_key=False, help="first retry delay, seconds")
    retry_max_s: float = setting(60.0, job_key=False, help="longest retry delay, seconds")

    def __post_init__(self) -> None:
        if self.budget_usd is not None:
            check_number("budget_usd", self.budget_usd, 0)
        for name in ("allow_unpriced", "cancel_on_deadline"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be true or false")
        if not isinstance(self.catalog, str):
            raise ValueError(f"catalog={self.catalog!r} must be a path to a catalog YAML, or empty")
        check_number("deadline_s", self.deadline_s, 0)
        self.poll_policy()  # validates the poll fields
        self.retry_policy()

    def poll_policy(self) -> PollPolicy:
        return PollPolicy(initial_s=self.poll_initial_s, max_s=max(self.poll_max_s, self.poll_initial_s))

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.retry_attempts, initial_s=self.retry_initial_s, max_s=max(self.retry_max_s, self.retry_initial_s)
        )
