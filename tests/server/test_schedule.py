"""The worker: one run at a time, triggers coalesced, a jittered schedule on a fake clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from reconciler.server.hooks import Trigger
from reconciler.server.schedule import Cron, Every, Worker, parse_interval


class FakeClock:
    """Time moves only when a test says so."""

    def __init__(self) -> None:
        self.time = 0.0
        self._waiters: list[tuple[float, asyncio.Future[bool]]] = []

    def now(self) -> float:
        return self.time

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        deadline = self.time + timeout
        alarm: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((deadline, alarm))
        woken: asyncio.Future[bool] = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait([alarm, woken], return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            self._waiters = [(d, f) for d, f in self._waiters if f is not alarm]

    async def advance(self, seconds: float) -> None:
        self.time += seconds
        for deadline, alarm in list(self._waiters):
            if deadline <= self.time and not alarm.done():
                alarm.set_result(True)
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class Recorder:
    """A reconcile that can be held in flight, counting how many run at once."""

    def __init__(self) -> None:
        self.triggers: list[Trigger] = []
        self.release = asyncio.Event()
        self.release.set()
        self.in_flight = 0
        self.most_at_once = 0

    async def __call__(self, trigger: Trigger) -> None:
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        self.triggers.append(trigger)
        await self.release.wait()
        self.in_flight -= 1


def test_intervals_are_parsed_as_flux_writes_them_and_bad_ones_refused() -> None:
    written = ("90", "30s", "5m", "1h", "1.5m", "1h30m", "2h45m30s", "500ms")
    assert [parse_interval(t) for t in written] == [90, 30, 300, 3600, 90, 5400, 9930, 0.5]
    for bad in ("0", "0s", "-1m", "m", "", "five minutes", "1x"):
        with pytest.raises(ValueError):
            parse_interval(bad)


def test_runs_at_start_then_every_interval_with_ten_percent_jitter() -> None:
    asyncio.run(_test_runs_at_start_then_every_interval_with_ten_percent_jitter())


async def _test_runs_at_start_then_every_interval_with_ten_percent_jitter() -> None:
    clock = FakeClock()
    reconcile = Recorder()
    worker = Worker(reconcile, 300, clock=clock, rng=random.Random(7))
    worker.start()
    await settle()
    assert [t.reason for t in reconcile.triggers] == ["startup"]
    gaps = []
    for _ in range(30):
        gap = worker.next_at - clock.now()
        gaps.append(gap)
        await clock.advance(gap - 1)
        runs = len(reconcile.triggers)
        await clock.advance(1)
        assert len(reconcile.triggers) == runs + 1, "the scheduled run came late or early"
    assert all(270 <= gap <= 330 for gap in gaps)
    assert len({round(gap, 3) for gap in gaps}) > 20, "no jitter"
    assert {t.reason for t in reconcile.triggers[1:]} == {"schedule"}
    await worker.stop()


def test_a_burst_of_triggers_during_a_run_gives_one_run_at_the_newest() -> None:
    asyncio.run(_test_a_burst_of_triggers_during_a_run_gives_one_run_at_the_newest())


async def _test_a_burst_of_triggers_during_a_run_gives_one_run_at_the_newest() -> None:
    clock = FakeClock()
    reconcile = Recorder()
    worker = Worker(reconcile, 300, clock=clock)
    reconcile.release.clear()
    worker.start()
    await settle()  # the startup run is in flight, held
    for number in range(5):
        worker.trigger(Trigger("github", f"sha{number}"))
        await settle()
    assert len(reconcile.triggers) == 1
    reconcile.release.set()
    await settle()
    assert [t.revision for t in reconcile.triggers] == [None, "sha4"]
    assert worker.coalesced == 4
    assert reconcile.most_at_once == 1
    # A webhook also resets the schedule: the next scheduled run is an interval later.
    assert 270 <= worker.next_at - clock.now() <= 330
    await worker.stop()


def test_stop_lets_the_run_in_flight_finish_and_starts_no_other() -> None:
    asyncio.run(_test_stop_lets_the_run_in_flight_finish_and_starts_no_other())


async def _test_stop_lets_the_run_in_flight_finish_and_starts_no_other() -> None:
    clock = FakeClock()
    reconcile = Recorder()
    worker = Worker(reconcile, 300, clock=clock)
    reconcile.release.clear()
    worker.start()
    await settle()
    worker.trigger(Trigger("generic"))
    stopping = asyncio.ensure_future(worker.stop())
    await settle()
    assert not stopping.done(), "stop returned with a run in flight"
    reconcile.release.set()
    await stopping
    assert reconcile.in_flight == 0
    assert len(reconcile.triggers) == 1  # the pending trigger was not started


def test_a_cron_schedule_waits_for_the_next_time_it_names() -> None:
    rng = random.Random(1)
    # 2026-12-01 06:07:30 UTC: the next quarter hour is 06:15:00, 450 s later.
    wall = 1796105250.0
    assert Cron("*/15 * * * *").delay(wall, rng) == 450
    assert Cron("0 6 * * *").delay(wall, rng) == 23 * 3600 + 52 * 60 + 30  # tomorrow
    assert "cron '*/15 * * * *'" in Cron("*/15 * * * *").describe()
    for bad in ("*/15 * * *", "61 * * * *", "every hour", "* * * * * *"):
        with pytest.raises(ValueError, match="not a cron expression"):
            Cron(bad)


def test_every_describes_itself_as_a_duration() -> None:
    assert Every(5400).describe() == "every 1h30m (+-10%)"


def test_the_worker_sleeps_until_the_cron_time() -> None:
    asyncio.run(_test_the_worker_sleeps_until_the_cron_time())


async def _test_the_worker_sleeps_until_the_cron_time() -> None:
    clock = FakeClock()
    reconcile = Recorder()
    wall = [1796105250.0]  # 06:07:30 UTC
    worker = Worker(reconcile, Cron("*/15 * * * *"), clock=clock, wall=lambda: wall[0])
    worker.start()
    await settle()
    assert [t.reason for t in reconcile.triggers] == ["startup"]
    await clock.advance(449)
    assert len(reconcile.triggers) == 1
    await clock.advance(1)
    assert [t.reason for t in reconcile.triggers] == ["startup", "schedule"]
    await worker.stop()
