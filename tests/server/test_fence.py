"""A replica's fence when its process is paused (SIGSTOP, a frozen VM) at the worst
moment: after the database renewed its lease, before it read the answer. The lease it
believes in counts from before it asked, so it asks again and makes no call on a lease
another replica holds by then."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from reconciler.server import replicas
from reconciler.server.replicas import Replicas
from reconciler.state.locks import CONFIRM_TRIES, LockLost

LEASE = 10.0
TICK = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Coordination:
    """One source's lease row, as `LeaseStore.confirm` reads and renews it."""

    replica = "this-replica"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.token = 1
        self.expires = clock.now + LEASE
        self.asked = 0
        self.pauses: list[float] = []
        """Seconds this process is paused after each answer, before it reads it."""
        self.claimed_meanwhile = False
        """Whether another replica claims the lease (once it ran out) during a pause."""

    def confirm(self, source: str, token: int) -> bool:
        self.asked += 1
        ours = token == self.token and self.expires > self.clock.now
        if ours:
            self.expires = self.clock.now + LEASE
        if self.pauses:
            self.clock.now += self.pauses.pop(0)
            if self.claimed_meanwhile and self.expires <= self.clock.now:
                self.token += 1
        return ours


def fence(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Coordination, Replicas]:
    clock = Clock()
    monkeypatch.setattr(replicas, "time", SimpleNamespace(monotonic=clock))
    database = Coordination(clock)
    replica = Replicas({}, database, lease=LEASE, tick=TICK)  # type: ignore[arg-type]
    replica.held["s"] = 1
    replica.deadline["s"] = clock.now - 1  # past it: the fence asks the database
    return replica._fence("s"), database, replica


def test_an_answer_read_promptly_holds_the_lease_until_a_tick_before_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check, database, _replica = fence(monkeypatch)
    check()
    assert database.asked == 1
    database.clock.now += LEASE - TICK - 0.01
    check()  # still within it: no statement
    assert database.asked == 1
    database.clock.now += 0.02
    check()
    assert database.asked == 2


def test_paused_after_the_renewal_while_another_replica_took_over_no_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check, database, replica = fence(monkeypatch)
    database.pauses = [3 * LEASE]
    database.claimed_meanwhile = True
    with pytest.raises(LockLost, match="lost its lease"):
        check()
    assert database.asked == 2 and "s" not in replica.held
    with pytest.raises(LockLost):
        check()  # and none later either


def test_paused_after_the_renewal_with_nobody_taking_over_still_no_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The lease ran out in the database while paused: free for any replica to claim.
    check, database, _replica = fence(monkeypatch)
    database.pauses = [3 * LEASE]
    with pytest.raises(LockLost, match="lost its lease"):
        check()


def test_a_database_that_always_answers_too_late_confirms_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check, database, _replica = fence(monkeypatch)
    database.pauses = [LEASE - TICK] * CONFIRM_TRIES  # renewed each time, read too late
    with pytest.raises(LockLost, match="in time"):
        check()
    assert database.asked == CONFIRM_TRIES
