"""Only the compiled extensions live here; everything else is in pyproject.toml."""

from setuptools import Extension, setup


def _extension(name: str, depends: tuple[str, ...] = ()) -> Extension:
    """``name`` (a dotted module) built from the C file of the same path."""
    return Extension(name, sources=[name.replace(".", "/") + ".c"], depends=list(depends),
                     extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"])


SLOTS = ("detectors/_slots.h",)  # reading an event's fields from its slots, shared by the detector loops

setup(
    ext_modules=[
        # The compiled accept path for event messages; streams/codec.py falls back to Python without it.
        _extension("streams._avrofast"),
        # The detectors' inner loops; each has a Python twin (each C file's header says which), which the
        # detector takes when the extension is missing and for whatever the C declines.
        _extension("detectors._kernels", SLOTS),  # numeric kernels and the batch's grouping
        _extension("detectors._join", SLOTS),  # FeedbackJoin._py_feed
        _extension("detectors._extraction", SLOTS),  # ExtractionDetector._py_learn_run
        _extension("detectors._input_anomaly", SLOTS),  # InputAnomalyDetector._py_judge_rows, _py_aggregate
    ],
)
