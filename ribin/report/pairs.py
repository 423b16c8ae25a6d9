"""Two exhibits compared region by region: what a report says about the pair."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ribin.calibration import Calibration, model_key
from ribin.compare import DEFAULT_PARAMS, CMCParams, Comparison
from ribin.compare import compare as compare_signatures
from ribin.exhibit import REGIONS, Exhibit, Signature
from ribin.signatures import pair_warnings

if TYPE_CHECKING:
    pass


HEIGHT_CMAP = "cividis"
REGION_NAMES = {"breech_face": "Breech face", "firing_pin": "Firing pin"}
DPI = 80
"""Resolution of embedded figures: enough for screen and print, small files."""


@dataclass(frozen=True)
class RegionPair:
    """One region of two exhibits, compared.

    Attributes
    ----------
    region : {"breech_face", "firing_pin"}
    first, second : Signature
        The reference (``first``) and the target registered onto it.
    result : Comparison
        :func:`ribin.compare.compare` of ``first`` and ``second``.
    calibration : Calibration or None
        The model giving the log10 likelihood ratio, when there is one.
    """

    region: str
    first: Signature
    second: Signature
    result: Comparison
    calibration: Calibration | None = None

    @property
    def log_lr(self) -> float | None:
        """log10 likelihood ratio of the score, or None without a calibration."""
        if self.calibration is None:
            return None
        return float(self.calibration.log10_lr(self.result.score))

    @property
    def warnings(self) -> tuple[str, ...]:
        """What to know before relying on this comparison (2D: small area, glare)."""
        return pair_warnings(self.first, self.second)


@dataclass(frozen=True)
class PairReport:
    """Two exhibits compared region by region, with what a report says about them.

    Attributes
    ----------
    first, second : Exhibit
    regions : tuple of RegionPair
        The regions both exhibits have in the same modality, in :data:`REGIONS` order.
    first_metadata, second_metadata : dict
        What the lab recorded about each exhibit (country, site, caliber, role, ...);
        empty for an exhibit read from a file.
    skipped : dict
        Region -> why it was not compared.
    calibration_source : str
        Where the calibration came from (a path, ``"<default>"`` or ``"none"``).
    """

    first: Exhibit
    second: Exhibit
    regions: tuple[RegionPair, ...]
    first_metadata: dict[str, Any] = field(default_factory=dict)
    second_metadata: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    calibration_source: str = "none"


def compare_pair(
    first: Exhibit,
    second: Exhibit,
    calibration: Mapping[str, Calibration] | None = None,
    *,
    params: Mapping[str, CMCParams] | None = None,
    first_metadata: Mapping[str, Any] | None = None,
    second_metadata: Mapping[str, Any] | None = None,
    calibration_source: str = "none",
    results: Mapping[str, Comparison] | None = None,
) -> PairReport:
    """Compare every region two exhibits share and gather what a report needs.

    Parameters
    ----------
    first, second : Exhibit
        Reference and target.
    calibration : mapping, optional
        ``"region/modality"`` -> :class:`~ribin.calibration.Calibration`.
    params : mapping, optional
        Comparison parameters per region (default :data:`ribin.compare.DEFAULT_PARAMS`).
    first_metadata, second_metadata : mapping, optional
        Lab metadata of stored exhibits.
    calibration_source : str
        Where ``calibration`` came from, for the record.
    results : mapping, optional
        Comparisons already made, by region; the others are computed.

    Returns
    -------
    PairReport
    """
    params = {**DEFAULT_PARAMS, **(params or {})}
    results = dict(results or {})
    regions, skipped = [], {}
    for region in REGIONS:
        sig_a = first.signatures().get(region)
        sig_b = second.signatures().get(region)
        if sig_a is None or sig_b is None:
            missing = first if sig_a is None else second
            reason = missing.missing.get(region, "not extracted")
            skipped[region] = f"{missing.exhibit_id}: {reason}"
            continue
        if sig_a.modality != sig_b.modality:
            skipped[region] = f"modalities differ ({sig_a.modality} vs {sig_b.modality})"
            continue
        result = results.get(region) or compare_signatures(sig_a, sig_b, params[region])
        model = (calibration or {}).get(model_key(region, sig_a.modality))
        regions.append(RegionPair(region, sig_a, sig_b, result, model))
    return PairReport(
        first=first,
        second=second,
        regions=tuple(regions),
        first_metadata=dict(first_metadata or {}),
        second_metadata=dict(second_metadata or {}),
        skipped=skipped,
        calibration_source=calibration_source,
    )
