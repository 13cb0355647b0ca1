"""README stays true: every setting and every registered detector is documented there."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from detectors.library import DEFAULT_DETECTORS
from streams.settings import Settings, env_var

pytestmark = pytest.mark.unit

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [spec.name for spec in fields(Settings)])
def test_every_setting_has_its_environment_variable_in_the_readme(name: str) -> None:
    assert f"`{env_var(name)}`" in README


@pytest.mark.parametrize("name", DEFAULT_DETECTORS)
def test_every_built_in_detector_is_described(name: str) -> None:
    assert f"| `{name}` |" in README


@pytest.mark.parametrize("document", ["docs/detection.md", "docs/guarantees.md", "docs/security.md", "docs/benchmarks.md"])
def test_linked_documents_exist(document: str) -> None:
    assert f"({document})" in README
    assert (Path(__file__).resolve().parents[2] / document).is_file()
