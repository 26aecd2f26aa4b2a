"""Layer 0: how long to wait before trying a retryable call again. tenacity lives here.

Rule: imports `reconciler.errors` and tenacity only.

One policy for every retry in reconciler (reads in the HTTP client, mutating calls in the
executor): exponential backoff with jitter, capped, never shorter than the platform's
own `Retry-After`, and only while the error says it is `retryable`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)


@dataclass(frozen=True, slots=True)
class Backoff:
    attempts: int = 5
    """Tries in all, the first included."""
    initial: float = 0.5
    maximum: float = 30.0

    def retrying(self) -> AsyncRetrying:
        """`async for attempt in backoff.retrying(): with attempt: ...`; the last error
        is raised as it is once the tries run out or an error is not retryable."""
        return AsyncRetrying(
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: bool(getattr(exc, "retryable", False))),
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(
            multiplier=self.initial, max=self.maximum, jitter=self.initial
        )(state)
        error = state.outcome.exception() if state.outcome else None
        after = getattr(error, "retry_after", None)
        return max(backoff, float(after)) if after else backoff
