"""Process-wide tuning for a long-running stream job (the worker, a replay).

* **Garbage collector.** CPython's cyclic collector runs a young-generation pass every 700
  net allocations and a full pass whenever enough objects have survived; detector state is
  millions of long-lived objects, so a full pass walks all of them. ``gc.freeze()`` after
  start-up (start-up objects are never walked again) and a young threshold of 20,000 raised
  worker throughput by about 25% on the benchmark workload. The default is now 100,000: a
  worker batch's events and record objects all survive a pass that comes mid-batch, and at
  20,000 the worker spent about 6% of its time in some 25 young passes per 200k events (3 at
  100,000, about 2%). Reference counting still frees almost everything at once; only
  reference cycles wait longer, and they are few here.
* **GIL switch interval.** The worker writes a batch's outputs to ClickHouse in a thread
  while the loop detects the next batch. chDB runs its query without the GIL, but the
  thread's Python parts wait for the detecting thread to give the GIL up, by default every
  5 ms; at half load that stretched each write about threefold and p99 detection latency
  from about 0.7 s to about 1 s. 1 ms lets the writer in sooner.
"""

from __future__ import annotations

import gc
import sys


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


def tune_switch_interval(milliseconds: float) -> None:
    """How long a thread may hold the GIL while another waits (``0`` keeps Python's 5 ms).

    >>> old = sys.getswitchinterval()
    >>> tune_switch_interval(1.0); sys.getswitchinterval()
    0.001
    >>> sys.setswitchinterval(old)
    """
    if milliseconds > 0:
        sys.setswitchinterval(milliseconds / 1000)
