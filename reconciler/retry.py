"""Layer 0: how long to wait before trying a retryable call again. tenacity lives here.

Rule: imports `reconciler.errors` and tenacity only.

One policy for every retry in reconciler (reads in the HTTP client, mutating calls in the
executor): exponential backoff with jitter, capped, never shorter than the platform's
own `Retry-After`, and only while the error says it is `retryable`. A platform that asks
for a longer pause than `longest_wait` is not waited for: the call fails at once and its
message says what the platform asked (`waited_too_long`), rather than sleeping for hours
in silence.
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
    longest_wait: float = 300.0
    """The longest Retry-After obeyed; a platform that asks for more is not retried."""

    def retrying(self) -> AsyncRetrying:
        """`async for attempt in backoff.retrying(): with attempt: ...`; the last error
        is raised as it is once the tries run out or an error is not retryable."""
        return AsyncRetrying(
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=self._wait,
            retry=retry_if_exception(self._worth_retrying),
            reraise=True,
        )

    def _worth_retrying(self, exc: BaseException) -> bool:
        if not getattr(exc, "retryable", False):
            return False
        after = getattr(exc, "retry_after", None)
        return after is None or float(after) <= self.longest_wait

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(
            multiplier=self.initial, max=self.maximum, jitter=self.initial
        )(state)
        error = state.outcome.exception() if state.outcome else None
        after = getattr(error, "retry_after", None)
        return max(backoff, float(after)) if after else backoff


def waited_too_long(error: BaseException, backoff: Backoff) -> str:
    """What to add to the message of an error that was not retried because the platform
    asked for a longer pause than `backoff` allows; empty otherwise."""
    after = getattr(error, "retry_after", None)
    if after is None or float(after) <= backoff.longest_wait:
        return ""
    return (
        f" (the platform asked to wait {float(after):g}s before trying again, longer than"
        f" reconciler waits ({backoff.longest_wait:g}s): try again later)"
    )
