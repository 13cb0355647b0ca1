"""River's half-space trees as arrays, so a micro-batch is scored with a few numpy steps.

River's ``anomaly.HalfSpaceTrees`` walks every tree node by node in Python: ~9 µs to score
and ~11 µs to learn one event with 10 trees of height 8. Three facts let a batch share that
work while every score stays bit-identical to River's:

* When every split feature is present in the event (the input-anomaly detector scales each
  event to its model's full feature set), River never looks at masses to choose a branch, so
  an event's root-to-leaf path depends only on the event and the splits. The paths of a whole
  batch take ``height`` vectorised steps.
* A walk adds one to every node on its path, so a node's mass is the sum of its leaves'
  masses: only per-leaf counts are kept.
* Scores read only the reference masses, which change only when the window swaps. A leaf's
  share of a score (River's sum of ``mass * 2**depth`` down the path, stopping after a node
  below the size limit) is computed once per window; an event's score is the sum of its
  leaves' shares over the trees. These are sums of small integers, exact in float64, so the
  order of summation cannot change a bit.

River still grows the trees (same seed, same splits); this module only reads their splits.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import numpy.typing as npt
from river import anomaly

from detectors._compiled import kernels as _kernels

Leaves = npt.NDArray[np.int64]  # (events, trees): tree t's leaf at t * 2**height + leaf
Rows = npt.NDArray[np.float64]  # (events, features): scaled events, columns in the forest's feature order

#: Below this many events a batch's paths are walked in Python: numpy's per-call cost would dominate.
SMALL_BATCH = 8


class HalfSpaceForest:
    """The trees River grows for ``feature_names``, learning and scoring like ``HalfSpaceTrees``.

    ``learn(leaves)`` is ``learn_one`` for each event in order (swapping the window whenever
    ``window_size`` events were learned); ``scores(leaves)`` is ``score_one`` for each event
    against the current reference window. Rows must hold every feature, scaled to [0, 1].
    """

    def __init__(self, feature_names: Sequence[str], n_trees: int, height: int, window_size: int,
                 seed: int) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self._max_score = n_trees * window_size * (2 ** (height + 1) - 1)  # River's normaliser
        self._python_splits = _river_splits(tuple(feature_names), n_trees, height, window_size, seed)
        self._split_features = [np.array(features, dtype=np.int64) for features, _ in self._python_splits]
        self._split_thresholds = [np.array(thresholds, dtype=np.float64) for _, thresholds in self._python_splits]
        n_leaves = n_trees * 2**height
        self._learned_per_leaf = np.zeros(n_leaves, dtype=np.int64)
        self._leaf_shares = np.zeros(n_leaves, dtype=np.int64)
        self._counter = 0
        self._first_window = True

    @property
    def room(self) -> int:
        """Events still to learn before the window swaps (and scores change)."""
        return self.window_size - self._counter

    def leaves(self, rows: Rows) -> Leaves:
        """Each event's leaf in each tree (compiled: ``detectors/_kernels.c`` walk)."""
        if _kernels is None:
            return self._py_leaves(rows)
        flat = self.__dict__.get("_flat_splits")
        if flat is None:  # made on first use, so forests from older snapshots have it too
            flat = self._flat_splits = (np.concatenate([np.zeros(0, np.int64), *self._split_features]),
                                        np.concatenate([np.zeros(0, np.float64), *self._split_thresholds]))
        walked = _kernels.walk(np.ascontiguousarray(rows, dtype=np.float64), rows.shape[1], flat[0], flat[1],
                               self.n_trees, self.height)
        return np.frombuffer(walked, np.int64).reshape(len(rows), self.n_trees)

    def _py_leaves(self, rows: Rows) -> Leaves:
        """``leaves`` in Python and numpy: the reference the compiled walk is tested against."""
        if len(rows) < SMALL_BATCH:
            return self._leaves_one_by_one(rows)
        n_events, n_features = rows.shape
        flat_rows = rows.ravel()
        row_starts = (np.arange(n_events, dtype=np.int64) * n_features)[:, None]
        node = np.tile(np.arange(self.n_trees, dtype=np.int64), (n_events, 1))  # tree t's root is node t of level 0
        for features, thresholds in zip(self._split_features, self._split_thresholds):
            goes_left = flat_rows.take(features.take(node) + row_starts) < thresholds.take(node)
            node <<= 1  # children of node k of a level are nodes 2k and 2k + 1 of the next
            node += 1
            node -= goes_left
        return node

    def _leaves_one_by_one(self, rows: Rows) -> Leaves:
        walked = []
        for row in rows.tolist():
            for tree in range(self.n_trees):
                node = tree
                for features, thresholds in self._python_splits:
                    node = 2 * node + (0 if row[features[node]] < thresholds[node] else 1)
                walked.append(node)
        return np.array(walked, dtype=np.int64).reshape(len(rows), self.n_trees)

    def scores(self, leaves: Leaves) -> npt.NDArray[np.float64]:
        """River's ``score_one`` of each event: 0 in the first window, else 1 - mass score / max."""
        if self._first_window:
            return np.zeros(len(leaves), dtype=np.float64)
        mass_scores = self._leaf_shares.take(leaves).sum(axis=1)
        return 1 - mass_scores / self._max_score  # type: ignore[no-any-return]  # numpy's operators are untyped

    def learn(self, leaves: Leaves) -> None:
        """River's ``learn_one`` of each event in order."""
        start = 0
        while start < len(leaves):
            window_part = leaves[start:start + self.room]
            self._learned_per_leaf += np.bincount(window_part.ravel(), minlength=len(self._learned_per_leaf))
            self._counter += len(window_part)
            start += len(window_part)
            if self._counter == self.window_size:
                self._swap_window()

    def _swap_window(self) -> None:
        self._leaf_shares = self._shares(self._learned_per_leaf)
        self._learned_per_leaf = np.zeros_like(self._learned_per_leaf)
        self._counter = 0
        self._first_window = False

    def _shares(self, reference_per_leaf: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Each leaf's part of a score: River's ``_walk_score`` down its path, per tree."""
        size_limit = 0.1 * self.window_size
        shares = np.zeros(self.n_trees, dtype=np.int64)
        walking = np.ones(self.n_trees, dtype=bool)
        for depth in range(self.height + 1):
            if depth:
                shares, walking = shares.repeat(2), walking.repeat(2)
            mass = reference_per_leaf.reshape(self.n_trees * 2**depth, -1).sum(axis=1)  # nodes of this level
            shares += np.where(walking, mass << depth, 0)
            if depth < self.height:  # River stops below the size limit, after counting the node
                walking &= mass >= size_limit
        return shares


@functools.lru_cache(maxsize=256)
def _river_splits(feature_names: tuple[str, ...], n_trees: int, height: int, window_size: int,
                  seed: int) -> tuple[tuple[tuple[int, ...], tuple[float, ...]], ...]:
    """Per level, each node's split feature (a column) and threshold, as River grows them.

    Node k of level d is tree ``k // 2**d``'s node ``k % 2**d`` counted left to right.
    Remembered: the splits depend only on the arguments (River draws them from ``seed``), and
    every model version with the same features, in every partition's shard, would grow the same
    trees again (about 5 ms each time).
    """
    river_trees = anomaly.HalfSpaceTrees(n_trees=1, height=height, window_size=window_size,
                                         limits={name: (0.0, 1.0) for name in feature_names}, seed=seed)
    column = {name: index for index, name in enumerate(feature_names)}
    levels: list[tuple[list[int], list[float]]] = [([], []) for _ in range(height)]
    for _ in range(n_trees):
        # River grows its trees on a learn_one when it has none, from that event's feature names
        # alone (the detector's events have exactly these), drawing on one random stream: tree by
        # tree, this is the forest ``HalfSpaceTrees(n_trees)`` grows. One at a time, a tree's ~500
        # nodes die young instead of a forest's thousands surviving into the old generation, which
        # made a new model version's first batch pay for a full garbage collection of the heap.
        river_trees.trees = []
        river_trees.learn_one(dict.fromkeys(feature_names, 0.5))  # type: ignore[no-untyped-call]  # river is untyped
        nodes = list(river_trees.trees)
        for features, thresholds in levels:
            features += [column[node.feature] for node in nodes]
            thresholds += [node.threshold for node in nodes]
            nodes = [child for node in nodes for child in node.children]
    return tuple((tuple(features), tuple(thresholds)) for features, thresholds in levels)
