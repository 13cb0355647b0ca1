"""Types of the compiled kernels (detectors/_kernels.c)."""

from typing import Any, Mapping, Sequence

import numpy as np
import numpy.typing as npt

def cusum_run(
    up: float, down: float, standardised: npt.NDArray[np.float64], slack: float, threshold: float, /
) -> tuple[int, float, float, int, int]: ...
def gather(maps: Sequence[Mapping[str, float]], names: tuple[str, ...], /) -> bytearray | None: ...
def walk(
    rows: npt.NDArray[np.float64], n_features: int, split_features: npt.NDArray[np.int64],
    split_thresholds: npt.NDArray[np.float64], n_trees: int, height: int, /
) -> bytearray: ...
def ranks(
    values: npt.NDArray[np.float64], distinct: npt.NDArray[np.float64], below: npt.NDArray[np.int32], n: int, /
) -> bytearray: ...
def group(
    events: Sequence[object], prediction_type: type, featureless: set[tuple[str, str]], /
) -> dict[tuple[str, str], tuple[list[int], list[Any]]]: ...
