"""Impact tiers and containment policy from TOML files (``config/assets.toml``, ``config/policy.toml``).

Files are read here, at the edge, and handed to the pure engine as data. Every key is
optional; a missing file path means built-in defaults (every asset ``medium``, every rule
``dry_run``). Unknown keys are refused, so a typo never silently weakens a guard rail.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from detectors.containment import ContainmentPolicy, PolicyRule
from detectors.engine import Engine
from detectors.base import Detector
from detectors.impact import Asset, ImpactTiers
from detectors.incidents import IncidentBook

_ASSET_KEYS = {"default_tier", "models", "datasets", "principals"}
_POLICY_KEYS = {"mode", "kill_switch", "min_severity", "ttl_minutes", "allow_list", "max_enforce_per_target_per_hour",
                "known_good_after_predictions", "rules", "incidents"}
_RULE_KEYS = {"kind", "actions", "min_severity", "tiers", "mode"}
_INCIDENT_KEYS = {"cooldown_minutes", "resolve_after_quiet_minutes", "correlation_window_minutes",
                  "max_open", "max_evidence_per_incident"}


@dataclass(frozen=True)
class PolicyConfig:
    """What ``policy.toml`` says: the containment policy plus incident-lifecycle spans."""

    policy: ContainmentPolicy = field(default_factory=ContainmentPolicy)
    book_options: Mapping[str, int] = field(default_factory=dict)


def load_impact_tiers(path: str | Path | None) -> ImpactTiers:
    """``assets.toml`` -> :class:`ImpactTiers` (defaults when ``path`` is empty)."""
    if not path:
        return ImpactTiers()
    data = _read(path, _ASSET_KEYS)
    return ImpactTiers(
        models=_assets(data.get("models", []), "id", path),
        datasets=_assets(data.get("datasets", []), "name", path),
        principals=_assets(data.get("principals", []), "name", path),
        default_tier=data.get("default_tier", "medium"),
    )


def load_policy(path: str | Path | None, **defaults: Any) -> PolicyConfig:
    """``policy.toml`` -> :class:`PolicyConfig`; ``defaults`` (e.g. from settings) fill keys the file omits.

    The kill switch is on when either the file or ``defaults`` turns it on.
    """
    data = _read(path, _POLICY_KEYS) if path else {}
    kill_switch = bool(data.get("kill_switch", False)) or bool(defaults.get("kill_switch", False))
    policy = ContainmentPolicy(
        mode=data.get("mode", defaults.get("mode", "dry_run")),
        min_severity=data.get("min_severity", defaults.get("min_severity", "medium")),
        ttl_ms=int(data.get("ttl_minutes", defaults.get("ttl_ms", 3_600_000) / 60_000) * 60_000),
        kill_switch=kill_switch,
        allow_list=frozenset(data.get("allow_list", defaults.get("allow_list", ()))),
        rules=tuple(_rule(rule, path) for rule in data.get("rules", [])),
        max_enforce_per_target_per_hour=int(data.get("max_enforce_per_target_per_hour", 3)),
    )
    incidents = data.get("incidents", {})
    _check_keys(incidents, _INCIDENT_KEYS, f"{path} [incidents]")
    minutes = {"cooldown_minutes": "cooldown_ms", "resolve_after_quiet_minutes": "quiet_ms",
               "correlation_window_minutes": "correlation_window_ms"}
    options = {target: int(incidents[name] * 60_000) for name, target in minutes.items() if name in incidents}
    options.update({name: int(incidents[name]) for name in ("max_open", "max_evidence_per_incident") if name in incidents})
    if "known_good_after_predictions" in data:
        options["known_good_after"] = int(data["known_good_after_predictions"])
    return PolicyConfig(policy, options)


def engine_from_files(
    detectors: Sequence[Detector] | None,
    assets_file: str | Path | None = None,
    policy_file: str | Path | None = None,
    database: str = "mlsentry",
    **policy_defaults: Any,
) -> Engine:
    """An engine whose incident book is configured by the two files (either may be empty)."""
    config = load_policy(policy_file, **policy_defaults)
    options = dict(config.book_options)
    if "cooldown_ms" not in options and "cooldown_ms" in policy_defaults:
        options["cooldown_ms"] = int(policy_defaults["cooldown_ms"])
    book = IncidentBook(config.policy, tiers=load_impact_tiers(assets_file), database=database, **options)
    return Engine(detectors, book=book)


def _read(path: str | Path, allowed: set[str]) -> dict[str, Any]:
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    _check_keys(data, allowed, str(path))
    return data


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")


def _assets(entries: list[dict[str, Any]], name_key: str, path: str | Path) -> dict[str, Asset]:
    assets = {}
    for entry in entries:
        _check_keys(entry, {name_key, "tier", "owners"}, f"{path} asset {entry.get(name_key)!r}")
        name = str(entry[name_key])
        assets[name] = Asset(name, entry.get("tier", "medium"), tuple(entry.get("owners", ())))
    return assets


def _rule(entry: dict[str, Any], path: str | Path) -> PolicyRule:
    _check_keys(entry, _RULE_KEYS, f"{path} rule {entry.get('kind')!r}")
    actions = []
    for action in entry.get("actions", []):
        name, _, target_type = str(action).partition(":")
        if not target_type:
            raise ValueError(f"{path}: action {action!r} must be written action:target_type, e.g. throttle:principal")
        actions.append((name, target_type))
    return PolicyRule(
        kind=entry["kind"],
        actions=tuple(actions),
        min_severity=entry.get("min_severity", "medium"),
        tiers=frozenset(entry.get("tiers", ())),
        mode=entry.get("mode"),
    )
