"""Imports every built-in detector module so each registers itself by name.

``DEFAULT_DETECTORS`` is what the engine runs when configuration names none; a new
built-in detector adds its module to the import and its name to the tuple.
"""

from detectors import (  # noqa: F401
    canary,
    concept_drift,
    data_integrity,
    download_burst,
    extraction,
    feature_drift,
    input_anomaly,
    label_shift,
    provenance,
    query_burst,
    score_drift,
    segment_degradation,
    unusual_access,
)

DEFAULT_DETECTORS: tuple[str, ...] = (
    # predictions
    "score_drift",
    "feature_drift",
    "concept_drift",
    "segment_degradation",
    "input_anomaly",
    "canary_regression",
    "extraction",
    # access
    "download_burst",
    "query_burst",
    "unusual_access",
    # data changes
    "label_shift",
    "provenance",
    "volume_spike",
    "unapproved_change",
)
