"""A micro-batch as the detectors read it: the events, and what several detectors derive from them, derived once.

Seven detectors read every prediction, and most of them start by sorting the batch's
predictions by model version, or by feeding a feedback join. A ``DetectorSet`` hands all the
detectors of one event type the same ``Batch``, so the first to ask for the grouping or a
join's matches pays for it and the others reuse it (a pass over a batch costs about 0.15 us
per event in Python, and each pass also pulls every event back into the cache).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Mapping, Sequence

from detectors._columns import FloatTable
from detectors._compiled import kernels
from detectors._columns import table as feature_table
from detectors.events import Event, PredictionEvent
from detectors.feedback import FeedbackJoin, Matched

VersionKey = tuple[str, str]
#: One model version's predictions in a batch: their positions in it, and the events.
VersionRun = tuple[list[int], list[PredictionEvent]]
#: A version's run when the batch holds none of its predictions (never to be appended to).
NO_PREDICTIONS: VersionRun = ([], [])
_features = attrgetter("features")


class Batch:
    """The events of one micro-batch, with derivations computed on first use and kept for the other detectors.

    >>> batch = Batch([PredictionEvent("e1", 1, "m", "v1", features={"x": 1.0}),
    ...                PredictionEvent("e1", 2, "m", "v1", label="1"),
    ...                PredictionEvent("e2", 3, "m", "v2")])
    >>> batch.predictions_by_version()
    {('m', 'v1'): ([0], [...]), ('m', 'v2'): ([2], [...])}
    >>> list(batch.predictions_with_features())
    [('m', 'v1')]
    """

    __slots__ = ("events", "_matches", "_by_version", "_featureless", "_with_features", "_tables", "_maps")

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = events
        # Made when first asked for: a detector's ``update`` is a batch of one, and most of it is never asked.
        self._matches: dict[int, list[Matched]] | None = None
        self._by_version: dict[VersionKey, VersionRun] | None = None
        self._featureless: set[VersionKey] = set()
        self._with_features: dict[VersionKey, VersionRun] | None = None
        self._tables: dict[tuple[VersionKey, tuple[str, ...]], FloatTable] | None = None
        self._maps: dict[VersionKey, list[Mapping[str, float]]] | None = None

    def matches(self, join: FeedbackJoin) -> list[Matched]:
        """``join.feed(events)``, fed once per batch however many detectors share the join."""
        if self._matches is None:
            self._matches = {}
        matches = self._matches.get(id(join))
        if matches is None:
            matches = self._matches[id(join)] = join.feed(self.events)
        return matches

    def predictions_by_version(self) -> dict[VersionKey, VersionRun]:
        """The predictions (feedback left out), per ``(model_id, model_version)`` in first-seen order."""
        if self._by_version is None:
            self._by_version = self._group()
        return self._by_version

    def predictions_with_features(self) -> dict[VersionKey, VersionRun]:
        """``predictions_by_version`` without the predictions that carry no features (first-seen order kept)."""
        if self._with_features is None:
            by_version = self.predictions_by_version()
            if not self._featureless:
                self._with_features = by_version
            else:
                self._with_features = {}
                for key, (positions, events) in by_version.items():
                    kept = [index for index, event in enumerate(events) if event.features]
                    if kept:
                        self._with_features[key] = ([positions[index] for index in kept],
                                                    [events[index] for index in kept])
        return self._with_features

    def feature_table(self, key: VersionKey, names: tuple[str, ...]) -> FloatTable:
        """The ``names`` features of ``key``'s predictions with features, a row each (``detectors._columns.table``).

        Made once per batch for every detector that asks with the same names (``feature_drift`` and
        ``input_anomaly`` read the same table). ``KeyError`` if a prediction lacks one of the names.
        """
        if self._tables is None:
            self._tables = {}
        table = self._tables.get((key, names))
        if table is None:
            table = self._tables[(key, names)] = feature_table(self.feature_maps(key), names)
            table.flags.writeable = False  # shared: a reader that scales it must copy
        return table

    def feature_maps(self, key: VersionKey) -> list[Mapping[str, float]]:
        """The feature maps of ``key``'s predictions with features, in order; made once per batch (read-only)."""
        if self._maps is None:
            self._maps = {}
        maps = self._maps.get(key)
        if maps is None:
            maps = self._maps[key] = list(map(_features, self.predictions_with_features()[key][1]))
        return maps

    def _group(self) -> dict[VersionKey, VersionRun]:
        """The predictions by version (``_py_group``, compiled: ``detectors/_kernels.c``'s ``group``)."""
        if kernels is None:
            return self._py_group()
        return kernels.group(self.events, PredictionEvent, self._featureless)

    def _py_group(self) -> dict[VersionKey, VersionRun]:
        groups: dict[VersionKey, VersionRun] = {}
        featureless = self._featureless
        for position, event in enumerate(self.events):
            if type(event) is not PredictionEvent and not isinstance(event, PredictionEvent):
                continue
            if not event.features:
                if event.label is not None:
                    continue  # feedback: a label for an earlier prediction
                featureless.add((event.model_id, event.model_version))
            key = (event.model_id, event.model_version)
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [])
            group[0].append(position)
            group[1].append(event)
        return groups


def last_touches(by_version: Mapping[VersionKey, VersionRun], matches: Sequence[Matched]) -> dict[VersionKey, int]:
    """Each version's last position in a batch: its last prediction, or a later label of one of its predictions.

    The order in which per-event processing would leave a label detector's LRU table
    (``detectors._lru.touch_in_order``), and the keys it would touch (``fits_without_eviction``).
    """
    touched = {key: positions[-1] for key, (positions, _) in by_version.items()}
    for label in matches:
        key = (label.prediction.model_id, label.prediction.model_version)
        if touched.get(key, -1) < label.position:
            touched[key] = label.position
    return touched
