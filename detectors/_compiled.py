"""The detectors' compiled kernels (``detectors/_kernels.c``, ``_join.c``, ``_extraction.c``,
``_input_anomaly.c``), or ``None`` in a source tree never installed.

Each kernel has a Python twin next to its caller, the reference it is tested against; callers
take the kernel when this module found it, and the twin for what the kernels do not take: values
that are not ints within ``SAFE_INT`` and batches shorter than ``COMPILED_FROM``.
"""

from __future__ import annotations

__all__ = ["COMPILED_FROM", "SAFE_INT", "extraction_kernel", "int64_safe", "join_kernel", "judge_kernel", "kernels"]

#: Ints the compiled loops take (times in ms, counts, settings): within +-2**62 no sum or difference of
#: two overflows 64 bits. Anything else is left to the Python loops.
SAFE_INT = 1 << 62
#: Batches shorter than this take the Python loops: a compiled call's set-up (reading and writing a
#: detector's state, checking its settings) costs more than a few events save (``make eval`` feeds
#: one event at a time).
COMPILED_FROM = 8


def int64_safe(*values: object) -> bool:
    """Whether every value is an int within +-``SAFE_INT``, which the compiled loops take."""
    return all(type(value) is int and -SAFE_INT < value < SAFE_INT for value in values)


try:  # built by `pip install` (setup.py)
    from detectors import _extraction as extraction_kernel
    from detectors import _input_anomaly as judge_kernel
    from detectors import _join as join_kernel
    from detectors import _kernels as kernels
except ImportError:  # pragma: no cover - the installed package always has them
    extraction_kernel = None  # type: ignore[assignment]
    judge_kernel = None  # type: ignore[assignment]
    join_kernel = None  # type: ignore[assignment]
    kernels = None  # type: ignore[assignment]
