"""The detectors' compiled loops (detectors/_kernels.c) against their Python twins, bit for bit.

A detector takes the compiled path whenever the package was installed, so a compiled loop
that differs from its twin in one float would change findings only on installed machines.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import _columns, _regime
from detectors._columns import _py_table
from detectors._regime import _py_cusum_run

pytestmark = pytest.mark.unit

kernels = _regime._kernels


def test_the_install_built_the_kernels() -> None:
    assert kernels is not None, "detectors/_kernels.c was not compiled: run `make install`"
    assert _regime._cusum_run is kernels.cusum_run
    assert _columns._kernels is kernels


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


def _same_run(compiled: tuple[Any, ...], reference: tuple[Any, ...]) -> None:
    assert compiled[0] == reference[0] and compiled[3:] == reference[3:]
    assert [_bits(value) for value in compiled[1:3]] == [_bits(value) for value in reference[1:3]]


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(up=finite, down=finite, values=st.lists(st.floats(-20, 20, allow_nan=False), max_size=300),
       slack=st.floats(0, 2), threshold=st.floats(0, 60))
def test_cusum_run_is_the_python_loop(up: float, down: float, values: list[float], slack: float,
                                      threshold: float) -> None:
    standardised = np.array(values, dtype=np.float64)
    _same_run(kernels.cusum_run(up, down, standardised, slack, threshold),
              _py_cusum_run(up, down, standardised, slack, threshold))


def test_cusum_run_reports_the_crossing_index_and_the_runs_start() -> None:
    standardised = np.array([0.0, 0.0, 5.0, 5.0, 5.0, 5.0], dtype=np.float64)
    last, up, down, up_start, down_start = kernels.cusum_run(0.0, 0.0, standardised, 0.5, 12.0)
    assert (last, up_start, down_start) == (4, 2, 4) and up == 13.5 and down == -5.5
    assert kernels.cusum_run(0.0, 0.0, np.array([], dtype=np.float64), 0.5, 1.0)[0] == -1


def test_cusum_run_refuses_what_is_not_a_contiguous_float64_buffer() -> None:
    with pytest.raises(TypeError):
        kernels.cusum_run(0.0, 0.0, np.arange(4, dtype=np.int64), 0.5, 1.0)
    with pytest.raises((TypeError, BufferError, ValueError)):
        kernels.cusum_run(0.0, 0.0, np.arange(8, dtype=np.float64)[::2], 0.5, 1.0)
    with pytest.raises(TypeError):
        kernels.cusum_run(0.0, 0.0, [1.0, 2.0], 0.5, 1.0)


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(1 << 70), 1 << 70),
    st.booleans(),
    st.just("1.5"),
)
maps = st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), values, min_size=2, max_size=3), max_size=20)


def _outcome(function: Any, rows: list[dict[str, Any]], names: tuple[str, ...]) -> Any:
    try:
        return [_bits(value) for value in function(rows, names).ravel().tolist()]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        return type(exc)


@settings(max_examples=400, deadline=None)
@given(rows=maps, names=st.sampled_from([("a",), ("a", "b"), ("b", "a", "c")]))
def test_gather_answers_as_numpy_does(rows: list[dict[str, Any]], names: tuple[str, ...]) -> None:
    assert _outcome(_columns.table, rows, names) == _outcome(_py_table, rows, names)


def test_gather_takes_plain_numbers_and_declines_the_rest() -> None:
    gathered = kernels.gather([{"a": 1.5, "b": 2}, {"a": -0.0, "b": 1 << 60}], ("b", "a"))
    assert np.frombuffer(gathered, np.float64).tolist() == [2.0, 1.5, float(1 << 60), -0.0]
    assert kernels.gather([{"a": True}], ("a",)) is None
    assert kernels.gather([{"a": np.float64(1.0)}], ("a",)) is None
    assert kernels.gather([{"a": 1 << 1100}], ("a",)) is None  # beyond a double: numpy's error, not ours
    assert kernels.gather([[("a", 1.0)]], ("a",)) is None
    with pytest.raises(KeyError, match="'b'"):
        kernels.gather([{"a": 1.0}], ("a", "b"))
    assert kernels.gather([], ("a",)) == bytearray()
    assert math.isnan(np.frombuffer(kernels.gather([{"a": math.nan}], ("a",)), np.float64)[0])


def test_a_table_is_writable_and_shaped_a_row_per_map() -> None:
    table = _columns.table([{"x": 1.0, "y": 2.0}, {"x": 3.0, "y": 4.0}, {"x": 5.0, "y": 6.0}], ("y", "x"))
    assert table.shape == (3, 2) and table.flags.writeable
    assert table.tolist() == [[2.0, 1.0], [4.0, 3.0], [6.0, 5.0]]


@settings(max_examples=150, deadline=None)
@given(n_features=st.integers(1, 5), n_trees=st.integers(1, 4), height=st.integers(0, 6), seed=st.integers(0, 99),
       n_rows=st.integers(0, 30), data=st.data())
def test_walk_finds_the_leaves_numpy_finds(n_features: int, n_trees: int, height: int, seed: int, n_rows: int,
                                           data: st.DataObject) -> None:
    from detectors._halfspace import SMALL_BATCH, HalfSpaceForest

    names = [f"f{index}" for index in range(n_features)]
    forest = HalfSpaceForest(names, n_trees, height, 50, seed)
    cell = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, -0.0, math.nan]))
    rows = np.array(data.draw(st.lists(st.lists(cell, min_size=n_features, max_size=n_features),
                                       min_size=n_rows, max_size=n_rows)), dtype=np.float64).reshape(n_rows, n_features)
    compiled = forest.leaves(rows)
    assert compiled.shape == (n_rows, n_trees) and compiled.dtype == np.int64
    assert compiled.tolist() == forest._py_leaves(rows).tolist()
    if n_rows >= SMALL_BATCH:  # both of the twin's ways
        assert compiled[:3].tolist() == forest._py_leaves(rows[:3]).tolist()


def test_walk_refuses_splits_that_do_not_fit_the_rows() -> None:
    rows = np.zeros((2, 3), dtype=np.float64)
    features, thresholds = np.array([0, 1, 2], dtype=np.int64), np.full(3, 0.5)
    assert np.frombuffer(kernels.walk(rows, 3, features, thresholds, 1, 2), np.int64).tolist() == [0, 0]
    with pytest.raises(ValueError, match="not a column"):
        kernels.walk(rows, 3, np.array([0, 3, 2], dtype=np.int64), thresholds, 1, 2)
    with pytest.raises(ValueError, match="sizes"):
        kernels.walk(rows, 3, features, thresholds, 2, 2)
    with pytest.raises(TypeError):
        kernels.walk(rows, 3, features.astype(np.int32), thresholds, 1, 2)
    with pytest.raises(TypeError):
        kernels.walk(rows.astype(np.float32), 3, features, thresholds, 1, 2)


@settings(max_examples=300, deadline=None)
@given(reference=st.lists(st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from([0.0, 1.0, -0.0, 2.5])),
                          min_size=1, max_size=60),
       values=st.lists(st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 1.0, 2.5])), max_size=80))
def test_ranks_are_the_mid_ranks_bisect_and_numpy_give(reference: list[float], values: list[float]) -> None:
    from bisect import bisect_left, bisect_right

    from detectors._regime import _distinct_counts, _py_ranks

    ordered = sorted(reference)
    counts = _distinct_counts(ordered)
    array = np.array(values, dtype=np.float64)
    compiled = np.frombuffer(kernels.ranks(array, *counts), np.float64)
    assert [_bits(rank) for rank in compiled.tolist()] == [_bits(rank) for rank in _py_ranks(array, counts).tolist()]
    by_bisect = [(bisect_left(ordered, value) + bisect_right(ordered, value)) / (2 * len(ordered)) for value in values]
    assert compiled.tolist() == by_bisect


def test_ranks_refuse_a_reference_without_its_sentinel_or_counts() -> None:
    from detectors._regime import _distinct_counts

    distinct, below, n = _distinct_counts([1.0, 2.0, 2.0])
    values = np.array([2.0, 0.5], dtype=np.float64)
    assert np.frombuffer(kernels.ranks(values, distinct, below, n), np.float64).tolist() == [4 / 6, 0.0]
    with pytest.raises(ValueError):
        kernels.ranks(values, distinct[:-1], below[:-1], n)  # no +inf at the end
    with pytest.raises(ValueError):
        kernels.ranks(values, distinct, below[:-1], n)
    with pytest.raises(TypeError):
        kernels.ranks(values, distinct, below.astype(np.int64), n)


def test_kernels_refuse_sizes_that_would_overflow_and_values_they_cannot_rank() -> None:
    from detectors._regime import _distinct_counts

    with pytest.raises((ValueError, MemoryError)):  # 2**61 + 1 trees of height 0: the output size would wrap
        kernels.walk(np.zeros(1), 1, np.zeros(0, np.int64), np.zeros(0, np.float64), 2**61 + 1, 0)
    with pytest.raises(ValueError, match="too many nodes"):
        kernels.walk(np.zeros(1), 1, np.zeros(0, np.int64), np.zeros(0, np.float64), 2**40, 30)
    with pytest.raises(ValueError, match="NaN"):
        kernels.ranks(np.array([0.5, math.nan]), *_distinct_counts([0.0, 1.0]))
