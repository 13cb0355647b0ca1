"""Bounded per-key state: the one eviction rule every detector uses.

Keys explode in production (a million principals, thousands of segments), so each table of
per-key state is an ``OrderedDict`` kept in least-recently-used order and trimmed to its
limit whenever a key is added.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def lru_get(table: OrderedDict[K, V], key: K, max_keys: int, make: Callable[[], V]) -> V:
    """The state of ``key``, created by ``make`` if new; the least recently used beyond ``max_keys`` go.

    >>> table: OrderedDict[str, list[int]] = OrderedDict()
    >>> for key in "abca":
    ...     _ = lru_get(table, key, 2, list)
    >>> list(table)
    ['c', 'a']
    """
    state = table.get(key)
    if state is None:
        state = table[key] = make()
        while len(table) > max_keys:
            table.popitem(last=False)
    else:
        table.move_to_end(key)
    return state
