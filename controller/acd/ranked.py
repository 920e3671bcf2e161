"""Ordered sets that pick the best member without scanning every member.

Choosing an agent must not cost O(agents): each queue tier keeps its eligible agents in a
``RankedSet`` (a heap with lazy deletion, O(log n) add/remove/best) or, for the ``random``
strategy, a ``RandomSet`` (O(1) add/remove/pick). ``best(skip)`` passes over members in
``skip`` (agents already tried for this call) without removing them.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Container, Hashable, Iterator
from itertools import count
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=Hashable)

_NOTHING: frozenset[Any] = frozenset()


class RankedSet(Generic[T]):
    """Members ordered by a key (smallest first). Removal is lazy; the heap is compacted
    when stale entries outnumber live ones, so memory stays O(live members)."""

    __slots__ = ("_heap", "_live", "_tokens")

    def __init__(self) -> None:
        self._heap: list[tuple[Any, int, T]] = []
        self._live: dict[T, tuple[Any, int]] = {}
        self._tokens = count()

    def add(self, item: T, key: Any) -> None:
        token = next(self._tokens)
        self._live[item] = (key, token)
        heapq.heappush(self._heap, (key, token, item))

    def discard(self, item: T) -> None:
        if self._live.pop(item, None) is not None and len(self._heap) > 2 * len(self._live) + 32:
            self._compact()

    def __contains__(self, item: object) -> bool:
        return item in self._live

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[T]:
        """Members in key order (O(n log n); for ring_all and views, not for picking one)."""
        return iter(sorted(self._live, key=self._live.__getitem__))

    def best(self, skip: Container[T] = _NOTHING) -> T | None:
        """Smallest-key member not in ``skip``; members in ``skip`` stay in the set."""
        heap, live = self._heap, self._live
        passed: list[tuple[Any, int, T]] = []
        found: T | None = None
        while heap:
            key, token, item = heap[0]
            entry = live.get(item)
            if entry is None or entry[1] != token:
                heapq.heappop(heap)  # stale
                continue
            if item in skip:
                passed.append(heapq.heappop(heap))
                continue
            found = item
            break
        for entry in passed:
            heapq.heappush(heap, entry)
        return found

    def key_of(self, item: T) -> Any:
        return self._live[item][0]

    def _compact(self) -> None:
        self._heap = [(key, token, item) for item, (key, token) in self._live.items()]
        heapq.heapify(self._heap)


class RandomSet(Generic[T]):
    """Members picked uniformly at random with a seedable generator (``random`` strategy)."""

    __slots__ = ("_items", "_index", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._items: list[T] = []
        self._index: dict[T, int] = {}
        self._rng = rng

    def add(self, item: T, key: Any = None) -> None:
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: T) -> None:
        i = self._index.pop(item, None)
        if i is None:
            return
        last = self._items.pop()
        if i < len(self._items):
            self._items[i] = last
            self._index[last] = i

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))

    def best(self, skip: Container[T] = _NOTHING) -> T | None:
        items = self._items
        if not items:
            return None
        for _ in range(8):  # a few random draws almost always find an untried member
            item = items[self._rng.randrange(len(items))]
            if item not in skip:
                return item
        candidates = [item for item in items if item not in skip]
        return self._rng.choice(candidates) if candidates else None
