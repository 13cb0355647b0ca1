"""Bounded per-key state: the one eviction rule every detector uses.

Keys explode in production (a million principals, thousands of segments), so each table of
per-key state is an ``OrderedDict`` kept in least-recently-used order and trimmed to its
limit whenever a key is added. A detector that learns a micro-batch key by key checks first
that no key would be evicted meanwhile, and leaves the table in per-event order afterwards.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable, Iterable, Mapping, TypeVar

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


def fits_without_eviction(table: Mapping[K, object], keys: Iterable[K], max_keys: int) -> bool:
    """Whether ``table`` takes the new ones among ``keys`` and stays within ``max_keys`` (so none is evicted).

    A detector learning a micro-batch key by key is exact only then; else it goes event by event.
    """
    return len(table) + sum(key not in table for key in keys) <= max_keys


def touch_in_order(table: OrderedDict[K, V], last_seen: Mapping[K, int]) -> None:
    """Leave ``table`` in the order that per-event lookups would: keys by when the batch last used them."""
    for key in sorted(last_seen, key=last_seen.__getitem__):
        table.move_to_end(key)
