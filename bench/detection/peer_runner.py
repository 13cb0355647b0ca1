"""Run one peer library's streaming detectors over per-key signals; used inside the peer's venv.

Standalone on purpose (only the standard library and the peer): the peer venvs pin their
own numpy, so nothing from mlsentry is imported here. Protocol, JSON on stdin:
``{"library": "frouros"|"menelaus", "signals": [{"id": 0, "values": [...], "binary": false}]}``;
JSON on stdout: ``{"version": "...", "detectors": {name: {"alarms": {id: [index, ...]},
"seconds": s, "updates": n, "failed_signals": n, "failure": "first error"}}}``. Every
detector runs with its library's default settings; after an alarm the detector is reset
(Frouros needs it; Menelaus resets itself).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable

Update = Callable[[Any, float], bool]


def _frouros() -> tuple[str, dict[str, tuple[Any, Update, bool]]]:
    import frouros
    from frouros.detectors.concept_drift import ADWIN, DDM, EDDM, PageHinkley

    def update(detector: Any, value: float) -> bool:
        detector.update(value=value)
        if detector.drift:
            detector.reset()
            return True
        return False

    numeric = {"ADWIN": ADWIN, "PageHinkley": PageHinkley}
    binary = {"DDM": DDM, "EDDM": EDDM}
    table: dict[str, tuple[Any, Update, bool]] = {name: (cls, update, False) for name, cls in numeric.items()}
    table.update({name: (cls, update, True) for name, cls in binary.items()})
    return str(frouros.__version__), table


def _menelaus() -> tuple[str, dict[str, tuple[Any, Update, bool]]]:
    from importlib.metadata import version

    from menelaus.change_detection import ADWIN, CUSUM, PageHinkley
    from menelaus.concept_drift import DDM, EDDM

    def numeric_update(detector: Any, value: float) -> bool:
        detector.update(value)
        return detector.drift_state == "drift"

    def error_update(detector: Any, value: float) -> bool:
        detector.update(y_true=1, y_pred=0 if value else 1)
        return detector.drift_state == "drift"

    table: dict[str, tuple[Any, Update, bool]] = {name: (cls, numeric_update, False) for name, cls in
             {"ADWIN": ADWIN, "PageHinkley": PageHinkley, "CUSUM": CUSUM}.items()}
    table.update({name: (cls, error_update, True) for name, cls in {"DDM": DDM, "EDDM": EDDM}.items()})
    return version("menelaus"), table


def run(request: dict[str, Any]) -> dict[str, Any]:
    library_version, table = {"frouros": _frouros, "menelaus": _menelaus}[request["library"]]()
    results = {}
    for name, (factory, update, binary_only) in table.items():
        alarms: dict[str, list[int]] = {}
        updates, failed, failure = 0, 0, ""
        started = time.perf_counter()
        for signal in request["signals"]:
            if binary_only and not signal["binary"]:
                continue
            detector, found = factory(), []
            try:
                for index, value in enumerate(signal["values"]):
                    updates += 1
                    if update(detector, value):
                        found.append(index)
            except Exception as exc:  # a peer refusing a signal (e.g. negative values) is reported, not fatal
                failed += 1
                failure = failure or f"{type(exc).__name__}: {exc}"[:200]
            if found:
                alarms[str(signal["id"])] = found
        results[name] = {"alarms": alarms, "seconds": time.perf_counter() - started, "updates": updates,
                         "failed_signals": failed, "failure": failure}
    return {"version": library_version, "detectors": results}


if __name__ == "__main__":
    json.dump(run(json.load(sys.stdin)), sys.stdout)
