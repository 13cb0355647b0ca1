"""Imports every built-in detector module so each registers itself by name."""

from detectors import download_burst, label_shift, provenance, score_drift  # noqa: F401
