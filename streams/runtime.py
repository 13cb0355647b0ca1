"""Process-wide tuning for a long-running stream job (the worker, a replay).

CPython's cyclic garbage collector runs a young-generation pass every 700 net allocations and
a full pass whenever enough objects have survived; detector state is millions of long-lived
objects, so a full pass walks all of them. Measured on the benchmark workload, ``gc.freeze()``
after start-up (so start-up objects are never walked again) and a young threshold of 20,000
raised worker throughput by about 25%. Reference counting still frees almost everything
at once; only reference cycles wait longer, and their number is small here.
"""

from __future__ import annotations

import gc


def tune_garbage_collector(young_threshold: int) -> None:
    """Freeze what exists now and collect the young generation every ``young_threshold`` allocations.

    ``0`` leaves the interpreter's defaults alone.

    >>> old = gc.get_threshold()
    >>> tune_garbage_collector(20_000); gc.get_threshold()[0]
    20000
    >>> gc.unfreeze(); gc.set_threshold(*old)
    """
    if young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
