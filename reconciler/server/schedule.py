"""The worker: one run at a time, triggers coalesced, a jittered schedule.

A trigger that arrives while a run is in flight waits as the one pending trigger; a
newer one replaces it, so a burst of pushes gives one more run, which fetches the
branch's newest commit. Between runs the worker sleeps until the next scheduled run,
`interval` after the last one ended, give or take `jitter` (10%), so many reconcilers
started together do not hit the platforms together. The clock is injected: tests move
time by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from reconciler.server.hooks import Trigger

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


def parse_interval(text: str) -> float:
    """`90`, `90s`, `5m`, `1h` to seconds; ValueError for anything else or for zero."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not a duration: write 30s, 5m or 1h")
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError("the interval must be above zero")
    return seconds


class Clock(Protocol):
    def now(self) -> float: ...

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        """Return when `event` is set or `timeout` seconds passed, whichever is first."""


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


class Worker:
    """Runs `reconcile` for each trigger, one at a time, and on schedule."""

    def __init__(
        self,
        reconcile: Callable[[Trigger], Awaitable[None]],
        interval: float,
        *,
        clock: Clock | None = None,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        self._reconcile = reconcile
        self.interval = interval
        self.jitter = jitter
        self.clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self.pending: Trigger | None = Trigger("startup")
        self.running: Trigger | None = None
        self.coalesced = 0
        self.next_at = self.clock.now()
        self.stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def trigger(self, trigger: Trigger) -> None:
        if self.pending is not None:
            self.coalesced += 1
        self.pending = trigger
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="reconciler-worker")

    async def stop(self) -> None:
        """No new runs; return once the run in flight, if any, has finished."""
        self.stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    @property
    def started(self) -> bool:
        return self._task is not None and not self._task.done()

    def _delay(self) -> float:
        return self.interval * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    async def _loop(self) -> None:
        while not self.stopping:
            if self.pending is None:
                await self.clock.wait(self._wake, max(0.0, self.next_at - self.clock.now()))
                self._wake.clear()
                if self.stopping:
                    return
                if self.pending is None:
                    if self.clock.now() < self.next_at:
                        continue  # woken early, and not for a trigger
                    self.pending = Trigger("schedule")
            trigger, self.pending = self.pending, None
            self.running = trigger
            try:
                await self._reconcile(trigger)
            finally:
                self.running = None
                self.next_at = self.clock.now() + self._delay()
