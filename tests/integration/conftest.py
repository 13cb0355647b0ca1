"""Fixtures for the ClickHouse store on embedded chDB (broker fixtures live in conftest_broker.py).

chDB opens one directory per process, so every client a test opens must be closed at
teardown or the next test's directory cannot be opened (``StoreBusyError`` says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest


@pytest.fixture
def chdb_dir(tmp_path: Path) -> Path:
    """A fresh, empty directory for one embedded ClickHouse."""
    path = tmp_path / "chdb"
    path.mkdir()
    return path


@pytest.fixture
def chdb_client(chdb_dir: Path) -> Iterator[Any]:
    """A chDB client on ``chdb_dir`` with the mlsentry schema applied; closed afterwards."""
    from streams.store import connect, ensure_schema

    client = connect(f"chdb://{chdb_dir}")
    try:
        ensure_schema(client)
        yield client
    finally:
        client.close()


@pytest.fixture
def store(chdb_client: Any) -> Any:
    """An ``IncidentStore`` writing to ``chdb_client`` (database ``mlsentry``)."""
    from streams.store import IncidentStore

    return IncidentStore(chdb_client)
