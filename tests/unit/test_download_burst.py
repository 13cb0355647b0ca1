"""Download bursts: quiet for a simulated day of normal traffic, catches a bulk pull mid-minute."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detectors._testing import MINUTE_MS, T0, download_stream
from detectors.download_burst import DownloadBurstDetector

pytestmark = pytest.mark.unit


def test_a_day_of_normal_downloads_gives_no_findings() -> None:
    detector = DownloadBurstDetector()
    events = download_stream(seed=2, n_principals=300, minutes=1440)
    assert [f for event in events if (f := detector.update(event))] == []


def test_burst_is_caught_within_its_first_minute_once() -> None:
    events = download_stream(seed=3, n_principals=30, minutes=60, burst=("u3", 40, 200, 2))
    detector = DownloadBurstDetector()
    found = [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]
    assert [index for index, _ in found] == [264]  # one burst, one finding
    finding = found[0][1]
    assert finding.kind == "download_burst" and finding.principal == "u3"
    assert finding.window_end - T0 < 41 * MINUTE_MS  # still inside the burst's first minute
    assert finding.window_start == T0 + 40 * MINUTE_MS
    assert finding.evidence["downloads_in_window"] == "21"
    assert finding.evidence["distinct_resources"] == "21"
    assert finding.evidence["baseline"] == "own"
    assert "u3" in finding.summary and "2026-01-01T00:40:00+00:00" in finding.summary


def test_new_principal_is_judged_against_peers() -> None:
    events = download_stream(seed=6, n_principals=20, minutes=30, burst=("newcomer", 25, 60, 1))
    detector = DownloadBurstDetector()
    findings = [f for event in events if (f := detector.update(event))]
    assert [(f.principal, f.evidence["baseline"]) for f in findings] == [("newcomer", "peers")]


def test_bytes_alone_can_trigger() -> None:
    event = download_stream(seed=7, n_principals=1, minutes=30)[0]
    detector = DownloadBurstDetector(min_bytes=10 * 2**30)
    finding = None
    for step in range(3):
        finding = detector.update(replace(event, ts=event.ts + step, bytes=4 * 2**30)) or finding
    assert finding is not None and finding.evidence["downloads_in_window"] == "3"


def test_denied_and_non_download_events_are_ignored() -> None:
    event = download_stream(seed=8, n_principals=1, minutes=30)[0]
    detector = DownloadBurstDetector(min_count=1)
    assert detector.update(replace(event, outcome="denied", count=50)) is None
    assert detector.update(replace(event, action="query", count=50)) is None
    assert detector.n_tracked_keys == 0


def test_quiet_principal_pulling_a_dozen_in_minutes_is_caught_against_its_own_rate() -> None:
    events = download_stream(seed=4, n_principals=30, minutes=240)
    template = events[0]
    usual = [replace(template, event_id=f"q{h}", ts=T0 + h * 40 * MINUTE_MS + 7_000, principal="quiet")
             for h in range(5)]  # one download every 40 minutes
    burst = [replace(template, event_id=f"b{i}", ts=T0 + 200 * MINUTE_MS + i * 25_000, principal="quiet",
                     resource=f"model-{i}") for i in range(12)]  # 12 in 5 minutes, never 20 in one
    events = sorted(events + usual + burst, key=lambda e: (e.ts, e.event_id))
    detector = DownloadBurstDetector()
    found = [(index, f) for index, event in enumerate(events) if (f := detector.update(event))]
    assert [index for index, _ in found] == [1409]  # its 8th download (min_rate_count), one finding
    finding = found[0][1]
    assert finding.principal == "quiet" and finding.evidence["rule"] == "own_rate"
    assert finding.evidence["downloads_in_window"] == "8"
    assert float(finding.evidence["log10_p_value"]) < float(finding.evidence["log10_p_threshold"])
    assert finding.window_start == T0 + 200 * MINUTE_MS


def test_habitual_clumps_are_judged_as_clumps() -> None:
    # A job that pulls 10 artifacts at once every 40 minutes is not a burst when it does so again.
    template = download_stream(seed=8, n_principals=1, minutes=30)[0]
    events = [replace(template, event_id=f"j{h}-{i}", ts=T0 + h * 40 * MINUTE_MS + i * 1_000, principal="job")
              for h in range(12) for i in range(10)]
    detector = DownloadBurstDetector()  # judged per download, the 2nd clump would already be a burst
    assert [f for event in events if (f := detector.update(event))] == []


def test_ew_baseline_is_rivers_ewmean_and_ewvar_bit_for_bit() -> None:
    """The inline baseline must not drift from River's statistics by a single bit."""
    import random

    from river import stats

    from detectors.download_burst import EWBaseline

    rng = random.Random(5)
    for fading_factor in (0.01, 0.1, 0.3, 0.5):
        values = [rng.choice([0.0, float(rng.randint(0, 9)), rng.gauss(3, 2), rng.random() * 1e6]) for _ in range(500)]
        baseline, mean, variance = EWBaseline(fading_factor), stats.EWMean(fading_factor), stats.EWVar(fading_factor)
        assert (baseline.mean, baseline.variance) == (mean.get(), variance.get())
        for value in values:
            baseline.update(value)
            mean.update(value)
            variance.update(value)
            assert (baseline.mean, baseline.variance) == (mean.get(), variance.get())


def test_bucket_counts_distinct_resources_like_a_capped_set() -> None:
    import random

    from detectors.download_burst import _Bucket

    rng = random.Random(3)
    for cap in (0, 1, 2, 5):
        bucket, reference = _Bucket(0, 0), set()
        for _ in range(200):
            resource = f"r{rng.randint(0, 8)}"
            bucket.add_resource(resource, cap)
            if len(reference) < cap:
                reference.add(resource)
            assert bucket.distinct_resources == len(reference)
