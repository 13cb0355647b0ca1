"""Impact tiers: how much an asset matters, the seed of every severity and containment decision.

Configuration (read in ``streams.config_files``) lists models and datasets with a tier
(low, medium, high, critical) and owners. Severity is detector strength scaled by the
tier of the asset the incident touches; assets nobody listed get ``default_tier``.

>>> tiers = ImpactTiers(models={"fraud": Asset("fraud", "critical", ("fraud-ml",))})
>>> tiers.severity(0.5, "critical"), tiers.severity(0.5, "medium"), tiers.severity(0.5, "low")
('high', 'medium', 'low')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from detectors.findings import Finding, Incident, severity_for

TIERS = ("low", "medium", "high", "critical")
#: strength multiplier per tier: a medium asset keeps the detector's own severity.
TIER_WEIGHT: Mapping[str, float] = {"low": 0.6, "medium": 1.0, "high": 1.3, "critical": 1.6}


@dataclass(frozen=True)
class Asset:
    """A model (by ``model_id``) or dataset (by name) with its tier and owners."""

    name: str
    tier: str = "medium"
    owners: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"tier of {self.name!r} must be one of {TIERS}, not {self.tier!r}")


@dataclass(frozen=True)
class ImpactTiers:
    """Tier lookup for the subject of a finding or incident."""

    models: Mapping[str, Asset] = field(default_factory=dict)
    datasets: Mapping[str, Asset] = field(default_factory=dict)
    principals: Mapping[str, Asset] = field(default_factory=dict)
    default_tier: str = "medium"

    def __post_init__(self) -> None:
        if self.default_tier not in TIERS:
            raise ValueError(f"default_tier must be one of {TIERS}, not {self.default_tier!r}")

    def assets_of(self, subject: Finding | Incident) -> list[Asset]:
        """The configured assets ``subject`` touches: its model, dataset (and the dataset's consumers), principal."""
        found: list[Asset] = []
        if subject.model_id:
            found += self._lookup(self.models, (f"{subject.model_id}:{subject.model_version}", subject.model_id))
        if subject.dataset:
            found += self._lookup(self.datasets, (subject.dataset,))
            consumers = subject.evidence.get("consumers", "")
            for consumer in filter(None, consumers.split(",")):
                found += self._lookup(self.models, (consumer,))
        if subject.principal:
            found += self._lookup(self.principals, (subject.principal,))
        return found

    def tier_of(self, subject: Finding | Incident) -> str:
        """The highest tier among the assets ``subject`` touches, ``default_tier`` when none is listed."""
        tiers = [asset.tier for asset in self.assets_of(subject)]
        return max(tiers, key=TIERS.index) if tiers else self.default_tier

    def owners_of(self, subject: Finding | Incident) -> tuple[str, ...]:
        return tuple(dict.fromkeys(owner for asset in self.assets_of(subject) for owner in asset.owners))

    @staticmethod
    def severity(strength: float, tier: str) -> str:
        """Severity from detector strength in [0, 1] scaled by the tier's weight."""
        return severity_for(min(1.0, strength * TIER_WEIGHT.get(tier, 1.0)))

    @staticmethod
    def _lookup(table: Mapping[str, Asset], names: Iterable[str]) -> list[Asset]:
        for name in names:
            if name in table:
                return [table[name]]
        return []
