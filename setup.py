"""Only the compiled extension lives here; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # The compiled accept path for event messages; streams/codec.py falls back to Python without it.
        Extension(
            "streams._avrofast",
            sources=["streams/_avrofast.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
        # The detectors' inner loops; each has a Python twin (detectors/_kernels.c's header says which).
        Extension(
            "detectors._kernels",
            sources=["detectors/_kernels.c"],
            depends=["detectors/_slots.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
        # The feedback join's batch loop; its Python twin is FeedbackJoin._py_feed.
        Extension(
            "detectors._join",
            sources=["detectors/_join.c"],
            depends=["detectors/_slots.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
        # The extraction detector's loop; its Python twin is ExtractionDetector._py_learn_run.
        Extension(
            "detectors._extraction",
            sources=["detectors/_extraction.c"],
            depends=["detectors/_slots.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
        # The input-anomaly detector's loops; Python twins InputAnomalyDetector._py_judge_rows, _py_aggregate.
        Extension(
            "detectors._input_anomaly",
            sources=["detectors/_input_anomaly.c"],
            depends=["detectors/_slots.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
    ],
)
