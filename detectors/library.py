"""Imports every built-in detector module so each registers itself by name.

``DEFAULT_DETECTORS`` is what the engine runs when configuration names none; a new
built-in detector adds its import below and its name to the tuple.
"""

from detectors import download_burst, label_shift, provenance, score_drift  # noqa: F401

DEFAULT_DETECTORS: tuple[str, ...] = (
    "score_drift",
    "download_burst",
    "label_shift",
    "provenance",
)
