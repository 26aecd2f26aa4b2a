"""One apply per target at a time: the locks of the targets a run touches, held with a
heartbeat for as long as the run lasts.

A lock is a row per target holding who took it (host, pid, command, revision) and when
it last proved alive. Another run may take it over when the holder is provably gone:
its heartbeat is older than `stale_after`, or it ran on this host and its process no
longer exists (a `kill -9` is seen at once). Targets are locked in sorted order, all or
none, so two runs that want overlapping targets cannot deadlock.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from reconciler.errors import OperationalError, RetryableError
from reconciler.state.base import LockHolder, StateStore


class LockedError(RetryableError):
    """A target's lock is held by a run that is alive."""

    def __init__(self, holder: LockHolder, waited: float) -> None:
        waited_text = f" (waited {waited:g}s)" if waited else ""
        super().__init__(
            f"target '{holder.target}' is locked by {holder.describe()}{waited_text}:"
            f" wait for it with --lock-timeout SECONDS; if that run is gone for good, run"
            f" `reconciler unlock {holder.target}` (nothing was changed)"
        )
        self.holder = holder


@dataclass(frozen=True, slots=True)
class LockOptions:
    timeout: float = 0.0
    """Seconds to wait for a held lock; 0 fails at once."""
    heartbeat: float = 10.0
    stale_after: float = 60.0
    """A holder silent this long is taken for dead (runners' clocks may differ a little)."""
    poll: float = 1.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


@asynccontextmanager
async def held(
    store: StateStore,
    targets: Sequence[str],
    *,
    command: str,
    revision: str | None,
    options: LockOptions = LockOptions(),
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[str]:
    """Hold the locks of `targets` for the body (which gets the locks' token); raises
    `LockedError` naming a holder when one is still held after `options.timeout`."""
    token = secrets.token_hex(16)
    host, pid = socket.gethostname(), os.getpid()

    def me(target: str) -> LockHolder:
        now = clock()
        return LockHolder(target, token, host, pid, command, revision, now, now)

    taken: list[str] = []
    try:
        for target in sorted(set(targets)):
            await _take(store, me, target, options, clock)
            taken.append(target)
        beat = asyncio.create_task(_beat(store, token, options, clock))
        try:
            yield token
        finally:
            beat.cancel()
    finally:
        for target in taken:
            store.release_lock(target, token)


async def _take(
    store: StateStore,
    me: Callable[[str], LockHolder],
    target: str,
    options: LockOptions,
    clock: Callable[[], float],
) -> None:
    started = clock()
    while True:
        mine = me(target)
        holder = store.acquire_lock(mine, stale_before=mine.since - options.stale_after)
        if holder.token != mine.token and holder.host == mine.host and not alive(holder.pid):
            holder = store.take_over_lock(mine, from_token=holder.token)
        if holder.token == mine.token:
            return
        waited = clock() - started
        if waited >= options.timeout:
            raise LockedError(holder, round(waited, 1))
        await asyncio.sleep(min(options.poll, max(0.0, options.timeout - waited)))


async def _beat(
    store: StateStore, token: str, options: LockOptions, clock: Callable[[], float]
) -> None:
    while True:
        await asyncio.sleep(options.heartbeat)
        try:
            store.heartbeat(token, clock())
        except OperationalError:
            continue  # the store blinked: the next beat tries again, well before staleness
