"""Feature vectors of a batch as one float64 table: compiled when the kernels were built, else Python.

Predictions of one model version nearly always carry the same features, so detectors that
learn per feature (``feature_drift``) or score whole vectors (``input_anomaly``) read a
version's batch as a table, a row per prediction and a column per feature name.
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from detectors._compiled import kernels as _kernels

FloatTable = npt.NDArray[np.float64]


def table(maps: Sequence[Mapping[str, float]], names: Sequence[str]) -> FloatTable:
    """``float`` of each map's ``names`` values, a row per map; ``KeyError`` if a map lacks a name.

    The compiled gather takes plain floats and ints; anything else (a bool, a numpy scalar, a
    string) goes the Python way, whose conversion and errors are numpy's.
    """
    if _kernels is not None and isinstance(maps, list):
        gathered = _kernels.gather(maps, tuple(names))
        if gathered is not None:
            return np.frombuffer(gathered, np.float64).reshape(len(maps), len(names))
    return _py_table(maps, names)


def _py_table(maps: Sequence[Mapping[str, float]], names: Sequence[str]) -> FloatTable:
    """``table`` in Python: the reference the compiled gather is tested against."""
    if len(names) == 1:  # itemgetter of one name gives the value, not a tuple
        flat = np.fromiter(map(itemgetter(names[0]), maps), np.float64, len(maps))
    else:
        flat = np.fromiter(chain.from_iterable(map(itemgetter(*names), maps)), np.float64, len(maps) * len(names))
    return flat.reshape(len(maps), len(names))
