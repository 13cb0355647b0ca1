"""The detectors' compiled kernels (``detectors/_kernels.c``, ``_join.c``, ``_extraction.c``,
``_input_anomaly.c``), or ``None`` in a source tree never installed.

Each kernel has a Python twin next to its caller, the reference it is tested against; callers
take the kernel when this module found it.
"""

from __future__ import annotations

__all__ = ["extraction_kernel", "join_kernel", "judge_kernel", "kernels"]

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
