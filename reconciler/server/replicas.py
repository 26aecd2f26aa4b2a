"""Replicas of one `serve --config` sharing the sources through leases in PostgreSQL.

Every `tick` a replica beats, renews the leases it holds (a lease it lost stops its
worker there), and claims free or expired ones up to its fair share (the sources over
the replicas alive, rounded up); beyond its share it lets idle sources go, so work
spreads when replicas join. A source it claims runs at once (a run the replica before
it may have left half done is finished), then on its schedule. A webhook or a UI action
for a source it does not own is written to the source's row and taken by the owner as
soon as PostgreSQL notifies it (at its next tick at the latest). Before every run and
every mutating call the owner confirms its lease (within it by its own clock, counted
from before the statement that granted it, past it by `LeaseStore.confirm`: its token,
unexpired), so a replica paused past its lease makes no call when it wakes. After each
run the owner publishes what it saw, which the other replicas' web UI shows. `/readyz`
answers 503 while the database cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace

from reconciler.errors import ReconcilerError
from reconciler.server.app import Server
from reconciler.server.hooks import Trigger
from reconciler.server.logs import event
from reconciler.server.schedule import Worker
from reconciler.state import LockHolder
from reconciler.state.leases import LeaseStore
from reconciler.state.locks import CONFIRM_TRIES, LockLost

log = logging.getLogger("reconciler.server")


def replica_id() -> str:
    """Unique per process: the host (a pod's name), the pid, and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _superseded(me: str, source: str) -> Callable[[LockHolder], bool]:
    """Another replica's hold on this source's targets: the lease that let it act has
    passed to this replica (it is fenced), so its locks are taken over at once."""

    def check(holder: LockHolder) -> bool:
        parts = holder.command.split(" ")
        return (
            len(parts) == 3 and parts[0] == "serve" and parts[2] == source and holder.command != me
        )

    return check


class Replicas:
    def __init__(
        self, servers: dict[str, Server], leases: LeaseStore, *, lease: float, tick: float
    ) -> None:
        self.servers = servers
        self.leases = leases
        self.lease = lease
        self.tick = tick
        self.held: dict[str, int] = {}
        self.deadline: dict[str, float] = {}
        """Per source held: until when (monotonic) the lease is surely still ours."""
        self.healthy = False
        self.stopping = False
        self._task: asyncio.Task[None] | None = None
        self._waiting: asyncio.Future[set[str]] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        for name, server in servers.items():
            server.route = self._router(name)
            server.view = self._viewer(name)
            server.runner.fence = self._fence(name)
            server.runner.published = self._publisher(name)
            me = f"serve {leases.replica} {name}"
            server.runner.locking = replace(
                server.runner.locking, command=me, superseded=_superseded(me, name)
            )

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(
            self.leases.join, socket.gethostname(), os.getpid(), sorted(self.servers)
        )
        self.healthy = True
        event(log, "replica joined", replica=self.leases.replica, sources=len(self.servers))
        self._task = asyncio.create_task(self._loop(), name="reconciler-replica")

    async def stop(self) -> None:
        """No new claims; runs in flight finish; the leases go back at once."""
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(self.servers[s].worker.stop() for s in list(self.held)))
        await asyncio.gather(*self._stopping, return_exceptions=True)
        with contextlib.suppress(ReconcilerError):
            await asyncio.to_thread(self.leases.leave)
        self.held.clear()
        if self._waiting is not None:
            await asyncio.gather(self._waiting, return_exceptions=True)
        await asyncio.to_thread(self.leases.close)

    async def _loop(self) -> None:
        due = time.monotonic()
        while not self.stopping:
            try:
                if time.monotonic() >= due:
                    due = time.monotonic() + self.tick
                    await self._once()
                    self.healthy = True
                else:
                    await self._take()
            except ReconcilerError as exc:
                self.healthy = False
                event(log, "coordination failed", logging.WARNING, why=str(exc))
            # Between ticks, a request written for a source held here is taken as soon as
            # its notification arrives rather than at the next tick.
            while not self.stopping and (left := due - time.monotonic()) > 0:
                # Shielded and kept: `stop` lets the wait end before closing its connection.
                self._waiting = asyncio.ensure_future(asyncio.to_thread(self.leases.wait, left))
                asked = await asyncio.shield(self._waiting)
                if asked & set(self.held):
                    break

    async def _once(self) -> None:
        live = await asyncio.to_thread(self.leases.beat)
        before = dict(self.held)
        # Read before asking: the database sets the expiry while the statement runs, so
        # a deadline counted from here ends before the lease does.
        asked = time.monotonic()
        kept = await asyncio.to_thread(self.leases.renew, before)
        for source in before:
            if source in kept:
                self.deadline[source] = self._until(asked)
            elif source in self.held:
                self._drop(source, "its lease was lost")
        share = math.ceil(len(self.servers) / live)
        if len(self.held) < share:
            asked = time.monotonic()
            claimed = await asyncio.to_thread(
                self.leases.claim, share - len(self.held), sorted(self.servers)
            )
            for source, token in claimed.items():
                self._own(source, token, asked)
        elif len(self.held) > share:
            idle = [
                s
                for s in sorted(self.held)
                if self.servers[s].worker.running is None and self.servers[s].worker.pending is None
            ]
            for source in idle[: len(self.held) - share]:
                token = self.held[source]
                self._drop(source, "another replica joined: sharing the work")
                await asyncio.to_thread(self.leases.release, source, token)
        await self._take()

    async def _take(self) -> None:
        asked = await asyncio.to_thread(self.leases.take, dict(self.held))
        for source, trigger in asked.items():
            if source in self.held:
                await self.servers[source].trigger(Trigger(**trigger))

    def _until(self, asked: float) -> float:
        """Until when a lease the database granted or renewed is surely ours, by this
        process's clock: counted from before the statement was sent (the database sets
        the expiry while it runs; this process may be paused, for as long as anything
        pauses it, before it reads the answer), less a tick."""
        return asked + self.lease - self.tick

    def _own(self, source: str, token: int, asked: float) -> None:
        self.held[source] = token
        self.deadline[source] = self._until(asked)
        server = self.servers[source]
        server.worker = Worker(server.runner, server.options.schedule, first=Trigger("claimed"))
        server.worker.start()
        event(log, "source claimed", source=source, token=token, replica=self.leases.replica)

    def _drop(self, source: str, why: str) -> None:
        self.held.pop(source, None)
        self.deadline.pop(source, None)
        task = asyncio.create_task(self._let_go(source, self.servers[source].worker))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        event(log, "source let go", source=source, why=why)

    async def _let_go(self, source: str, worker: Worker) -> None:
        await worker.stop()  # a run in flight: its fence stops it
        if source not in self.held:  # not claimed again meanwhile
            self.servers[source].runner.close()

    # --- what the servers ask ------------------------------------------------------------

    def _router(self, source: str) -> Callable[[Trigger], Awaitable[bool]]:
        async def route(trigger: Trigger) -> bool:
            """True when the trigger went to the source's row for its owner to take."""
            if source in self.held:
                return False
            # Off the event loop: the coordination connection may be busy with a tick.
            await asyncio.to_thread(self.leases.request, source, asdict(trigger))
            return True

        return route

    def _viewer(self, source: str) -> Callable[[], None]:
        def view() -> None:
            if source in self.held:
                return
            seen = self.leases.snapshot(source)
            if seen is not None:
                self.servers[source].runner.show(seen)

        return view

    def _fence(self, source: str) -> Callable[[], None]:
        def check() -> None:
            token = self.held.get(source)
            if token is None:
                raise LockLost(
                    f"this replica no longer holds source {source}: no further call is made"
                )
            if time.monotonic() < self.deadline.get(source, 0.0):
                return
            # Paused, or beats failing: ask the database before anything else is sent.
            # An answer read only after the lease it renewed has run out (this process
            # paused while the statement ran) proves nothing: asked again.
            for _ in range(CONFIRM_TRIES):
                asked = time.monotonic()
                try:
                    confirmed = self.leases.confirm(source, token)
                except ReconcilerError as exc:
                    raise LockLost(
                        f"the lease on source {source} could not be confirmed ({exc}): no"
                        " further call is made"
                    ) from None
                if not confirmed:
                    self.held.pop(source, None)
                    raise LockLost(
                        f"this replica lost its lease on source {source} (token {token}): no"
                        " further call is made"
                    )
                self.deadline[source] = self._until(asked)
                if time.monotonic() < self.deadline[source]:
                    return
            raise LockLost(
                f"the lease on source {source} could not be confirmed in time (the database"
                f" answered after the lease it renewed had run out, {CONFIRM_TRIES} times):"
                " no further call is made"
            )

        return check

    def _publisher(self, source: str) -> Callable[[], Awaitable[None]]:
        async def publish() -> None:
            token = self.held.get(source)
            if token is None:
                return
            seen = self.servers[source].runner.seen()
            with contextlib.suppress(ReconcilerError):
                await asyncio.to_thread(self.leases.publish, source, token, seen)

        return publish
