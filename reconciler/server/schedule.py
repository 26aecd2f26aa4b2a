"""The worker: one run at a time, triggers coalesced, a jittered schedule.

A trigger that arrives while a run is in flight waits as the one pending trigger; a
newer one replaces it, so a burst of pushes gives one more run, which fetches the
branch's newest commit. Between runs the worker sleeps until the next scheduled run:
`interval` after the last one ended, give or take 10% (`Every`), or the next time a cron
expression names (`Cron`). The clock is injected: tests move time by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from croniter import croniter
from pytimeparse2 import parse as parse_duration

from reconciler.server.hooks import Trigger


def parse_interval(text: str) -> float:
    """A duration as Flux writes it (`90s`, `5m`, `1h30m`, `1.5h`; a bare number is
    seconds) to seconds, by pytimeparse2; ValueError for anything else, or not above 0."""
    seconds = parse_duration(text.strip()) if text.strip() else None
    if seconds is None:
        raise ValueError(f"'{text}' is not a duration: write 30s, 5m, 1h or 1h30m")
    if float(seconds) <= 0:
        raise ValueError("the interval must be above zero")
    return float(seconds)


def shown(seconds: float) -> str:
    """Seconds as a duration: 5400 as 1h30m."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" * bool(hours), f"{minutes}m" * bool(minutes), f"{secs}s" * bool(secs)]
    return "".join(parts) or f"{seconds:g}s"


class Schedule(Protocol):
    def delay(self, wall: float, rng: random.Random) -> float:
        """Seconds from `wall` (Unix time, when the last run ended) to the next run."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Every:
    """`interval` after the last run ended, give or take `jitter`, so that many
    reconcilers started together do not hit the platforms together."""

    seconds: float
    jitter: float = 0.1

    def delay(self, wall: float, rng: random.Random) -> float:
        return self.seconds * rng.uniform(1 - self.jitter, 1 + self.jitter)

    def describe(self) -> str:
        return f"every {shown(self.seconds)} (+-{self.jitter:.0%})"


@dataclass(frozen=True)
class Cron:
    """At the times a cron expression names (five fields, UTC), by croniter."""

    expression: str

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.expression) or len(self.expression.split()) != 5:
            raise ValueError(
                f"'{self.expression}' is not a cron expression: five fields, minute hour"
                " day-of-month month day-of-week, e.g. '*/15 * * * *' or '0 6 * * 1-5'"
            )

    def delay(self, wall: float, rng: random.Random) -> float:
        start = datetime.fromtimestamp(wall, UTC)
        following = float(croniter(self.expression, start).get_next(float))
        return max(0.0, following - wall)

    def describe(self) -> str:
        return f"cron '{self.expression}' (UTC)"


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
        schedule: Schedule | float,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        first: Trigger | None = None,
    ) -> None:
        self._reconcile = reconcile
        self.schedule = Every(schedule) if isinstance(schedule, int | float) else schedule
        self._wall = wall
        self.clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self.pending: Trigger | None = first or Trigger("startup")
        """A run at once: at start, or when a replica takes a source over."""
        self.running: Trigger | None = None
        self.coalesced = 0
        self.next_at = self.clock.now()
        self.stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def trigger(self, trigger: Trigger) -> None:
        if self.pending is not None:
            self.coalesced += 1
            if trigger.plan and not self.pending.plan:
                return  # the run pending applies, and so refreshes too
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
        return self.schedule.delay(self._wall(), self._rng)

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
