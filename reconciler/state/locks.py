"""One apply per target at a time: the locks of the targets a run touches, held with a
heartbeat for as long as the run lasts.

A lock is a row per target holding who took it (host, pid, command, revision) and when
it last proved alive. Another run may take it over when the holder is provably gone:
its heartbeat is older than `stale_after`, or it ran on this host and its process no
longer exists (a `kill -9` is seen at once). Targets are locked in sorted order, all or
none, so two runs that want overlapping targets cannot deadlock.

Holding is fenced: a run that was paused (SIGSTOP, a frozen VM) past `stale_after` may
have lost its locks to another run. `Lease.check`, called before every mutating call,
confirms the locks with a heartbeat whenever one is overdue; a heartbeat that finds
fewer locks than were taken, or a store that stayed unreachable past `stale_after`,
loses the lease for good, and `check` raises `LockLost` naming the new holder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from reconciler.errors import OperationalError, RetryableError
from reconciler.state.base import LockHolder, StateStore

logger = logging.getLogger(__name__)

CONFIRM_TRIES = 3
"""How many times a check before a change asks the store (a lock's heartbeat, a serve
replica's lease) when each answer comes back too late to prove anything."""


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


class LockLost(OperationalError):
    """This run's locks were taken over (it was paused past their staleness, or the
    store could not be reached for that long): it must make no further call."""

    refused = True  # raised by the fence, before the request leaves


@dataclass(frozen=True, slots=True)
class LockOptions:
    timeout: float = 0.0
    """Seconds to wait for a held lock; 0 fails at once."""
    heartbeat: float = 10.0
    stale_after: float = 60.0
    """A holder silent this long is taken for dead (runners' clocks may differ a little)."""
    poll: float = 1.0
    command: str = "apply"
    """What the holder is, as `status` and `unlock` show it."""
    superseded: Callable[[LockHolder], bool] | None = None
    """Holders known to act no more, whose locks are taken over at once: a `serve`
    replica whose lease on the source has passed to this one (fenced: it makes no call)."""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class Lease:
    """The locks one run holds, and whether it still holds them."""

    def __init__(
        self,
        store: StateStore,
        token: str,
        targets: Sequence[str],
        options: LockOptions,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.token = token
        self.targets = tuple(targets)
        self.options = options
        self.clock = clock
        self.confirmed = clock()
        self.lost: LockLost | None = None

    def check(self) -> None:
        """Raise unless this run still holds its locks; before each mutating call. Costs a
        heartbeat only when one is overdue (the run was paused, or beats failed): then a
        heartbeat that fails, or finds the locks gone, lets no further call start."""
        if self.lost is not None:
            raise self.lost
        for _ in range(CONFIRM_TRIES):
            if self.clock() - self.confirmed <= self.options.heartbeat * 1.5:
                return
            # `confirmed` counts from before the heartbeat was sent: an answer read only
            # after a pause (the process stopped while the statement ran) is stale by
            # then, and the locks may have been taken over since: asked again.
            self.confirm(strict=True)
        raise LockLost(
            f"the lock on {', '.join(self.targets)} could not be confirmed in time (the"
            f" state store answered too late, {CONFIRM_TRIES} times): no further call is made"
        )

    def confirm(self, *, strict: bool = False) -> None:
        """A heartbeat: refresh the locks and count them. A store that cannot be reached
        is tolerated (logged) while the locks cannot have gone stale, unless `strict`."""
        if self.lost is not None:
            raise self.lost
        now = self.clock()
        try:
            count = self.store.heartbeat(self.token, now)
        except OperationalError as exc:
            silent = now - self.confirmed
            if silent >= self.options.stale_after:
                self._lose(f"the state store could not be reached for {silent:.0f}s")
            logger.warning("lock heartbeat failed, trying again at the next: %s", exc)
            if strict:
                raise LockLost(
                    f"the lock on {', '.join(self.targets)} could not be confirmed before a"
                    f" change ({exc}): no further call is made"
                ) from exc
            return  # the store blinked: the locks cannot have gone stale yet
        if count < len(self.targets):
            self._lose("they were taken over while this run was not heard from")
        self.confirmed = now

    def _lose(self, why: str) -> None:
        holders = []
        try:
            locks = self.store.locks()
            holders = [
                f"'{t}' is now held by {locks[t].describe()}"
                for t in self.targets
                if t in locks and locks[t].token != self.token
            ]
        except OperationalError:
            pass
        self.lost = LockLost(
            f"this run lost its lock on {', '.join(self.targets)}: {why}"
            + (f"; {'; '.join(holders)}" if holders else "")
            + ". It makes no further call: check what the other run does, then plan again"
        )
        raise self.lost


@asynccontextmanager
async def held(
    store: StateStore,
    targets: Sequence[str],
    *,
    command: str,
    revision: str | None,
    options: LockOptions = LockOptions(),
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Lease]:
    """Hold the locks of `targets` for the body (which gets the `Lease`); raises
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
        lease = Lease(store, token, taken, options, clock)
        beat = asyncio.create_task(_beat(lease))
        try:
            yield lease
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
        gone = holder.host == mine.host and not alive(holder.pid)
        if options.superseded is not None and options.superseded(holder):
            gone = True
        if holder.token != mine.token and gone:
            holder = store.take_over_lock(mine, from_token=holder.token)
        if holder.token == mine.token:
            return
        waited = clock() - started
        if waited >= options.timeout:
            raise LockedError(holder, round(waited, 1))
        await asyncio.sleep(min(options.poll, max(0.0, options.timeout - waited)))


async def _beat(lease: Lease) -> None:
    while True:
        await asyncio.sleep(lease.options.heartbeat)
        try:
            lease.confirm()
        except LockLost as exc:
            logger.error("%s", exc)
            return
