"""Leases on sources (`reconciler.state.leases`) on a real PostgreSQL: one owner at a
time, renewals that keep only what is still one's own, and requests that reach the owner
through LISTEN/NOTIFY without waiting for its next tick."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from reconciler.state.leases import LeaseStore

SOURCES = ["a", "b", "c", "d"]


@pytest.fixture
def pair(postgres_url: str) -> Iterator[tuple[LeaseStore, LeaseStore]]:
    one = LeaseStore(postgres_url, "one", lease=1.5)
    two = LeaseStore(postgres_url, "two", lease=1.5)
    one.join("host", 1, SOURCES)
    two.join("host", 2, SOURCES)
    yield one, two
    one.close()
    two.close()


def test_claims_never_overlap_and_renewal_keeps_only_what_is_still_ones_own(
    pair: tuple[LeaseStore, LeaseStore],
) -> None:
    one, two = pair
    mine = one.claim(2, SOURCES)
    theirs = two.claim(4, SOURCES)
    assert len(mine) == 2 and not set(mine) & set(theirs) and len(theirs) == 2
    assert one.renew(mine) == mine  # all of them, in one statement
    # A token that is no longer the lease's (a claim since) is not renewed.
    assert one.renew({**mine, theirs_first(theirs): 1}) == mine
    # One stops renewing, two goes on: one's leases lapse and two claims them.
    time.sleep(0.8)
    assert two.renew(theirs) == theirs
    time.sleep(0.8)
    taken = two.claim(4, SOURCES)
    assert set(taken) == set(mine)
    assert all(taken[s] > mine[s] for s in mine)  # a higher fencing token each
    assert one.renew(mine) == {}
    assert not one.confirm(sorted(mine)[0], mine[sorted(mine)[0]])


def theirs_first(theirs: dict[str, int]) -> str:
    return sorted(theirs)[0]


def test_a_request_wakes_the_owner_at_once(pair: tuple[LeaseStore, LeaseStore]) -> None:
    one, two = pair
    held = two.claim(1, ["c"])
    assert held
    woken: list[set[str]] = []
    waiting = threading.Thread(target=lambda: woken.append(two.wait(10)))
    started = time.monotonic()
    waiting.start()
    time.sleep(0.1)
    one.request("c", {"reason": "webhook"})
    waiting.join(5)
    assert woken == [{"c"}]
    assert time.monotonic() - started < 2  # not the ten seconds of the wait
    assert two.take(held) == {"c": {"reason": "webhook"}}
    assert two.take(held) == {}  # taken once
    assert two.wait(0.05) == set()  # nothing more: the wait runs out
