"""Shared fixtures: the real embedded broker (tansu) for integration tests."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import pytest

from streams.broker import EmbeddedBroker
from streams.settings import Settings

_counter = itertools.count()


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One tansu broker for the whole session (each test uses its own topics and group)."""
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as broker:
        yield broker


def isolated_settings(tmp_path: Path, bootstrap_servers: str, **overrides: object) -> Settings:
    """Settings whose topics and consumer group belong to one test only."""
    suffix = f"t{next(_counter)}-{tmp_path.name[-12:]}"
    values: dict[str, object] = dict(
        bootstrap_servers=bootstrap_servers,
        group_id=f"mlsentry-{suffix}",
        topic_predictions=f"{suffix}.predictions",
        topic_access=f"{suffix}.access",
        topic_data_changes=f"{suffix}.data_changes",
        topic_incidents=f"{suffix}.incidents",
        topic_containment=f"{suffix}.containment",
        topic_dead_letter=f"{suffix}.dead_letter",
        topic_partitions=2,
        data_dir=str(tmp_path / "data"),
        # 4 s: quick group joins on tansu (it holds a JoinGroup for about half the session timeout) with
        # headroom for heartbeats when the two cores are busy.
        session_timeout_s=4.0,
        web_port=0,
    )
    values.update(overrides)
    return Settings.load(environ={}, **values)
