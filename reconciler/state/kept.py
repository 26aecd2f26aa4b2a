"""State stores kept open between the runs of a long-running process (`serve`)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from reconciler.state.base import StateStore


class KeptStores:
    """State stores kept open between runs (`serve`): opening one is a connection and a
    schema check, on PostgreSQL the costliest part of a short run. A run takes its own
    (two runs never share one) and gives it back when it ended well; it is opened again
    when it stopped answering. At most `capacity` are kept, those used last, and each is
    closed once idle for `expire`'s seconds: a database counts one connection per source
    recently run, not one per source."""

    def __init__(
        self,
        open_store: Callable[[str, Path], StateStore],
        capacity: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open_store
        self.capacity = capacity
        self._kept: OrderedDict[tuple[str, Path], tuple[StateStore, float]] = OrderedDict()
        self._clock = clock

    def take(self, url: str, root: Path) -> StateStore:
        kept = self._kept.pop((url, root), None)
        if kept is not None:
            if kept[0].ping():
                return kept[0]
            kept[0].close()
        return self._open(url, root)

    def give_back(self, url: str, root: Path, store: StateStore) -> None:
        key = (url, root)
        if key in self._kept or self.capacity <= 0:  # another run kept one meanwhile
            store.close()
            return
        self._kept[key] = (store, self._clock())
        while len(self._kept) > self.capacity:
            _, (oldest, _) = self._kept.popitem(last=False)
            oldest.close()

    def expire(self, idle: float) -> None:
        """Close the stores no run has taken for `idle` seconds."""
        now = self._clock()
        for key, (store, since) in list(self._kept.items()):
            if now - since >= idle:
                del self._kept[key]
                store.close()

    def forget(self, url: str, root: Path) -> None:
        kept = self._kept.pop((url, root), None)
        if kept is not None:
            kept[0].close()

    def close(self) -> None:
        while self._kept:
            _, (store, _) = self._kept.popitem()
            store.close()
