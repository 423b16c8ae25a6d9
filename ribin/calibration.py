"""Score calibration: comparison scores to log10 likelihood ratios.

A likelihood ratio says how much more probable a score is if two casings were fired by the
same firearm than if they were not. It supports the examiner's microscope comparison; it is
not a conclusion, and it is only as good as the known-match and known-non-match scores it
was fitted on.

The model is a class-balanced logistic regression of match vs non-match on the score, with a
small ridge penalty so that perfectly separated data still give a finite slope. Its output is
bounded by what the data can support (an empirical-bound rule): with ``n`` known non-matches,
none scoring as high as a new score, the data cannot show an LR above about ``n``, so log10
LRs are clipped to ``[-log10(n_match + 1), log10(n_nonmatch + 1)]``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from ribin.errors import InputError

MODEL = "balanced-logistic-v1"


@dataclass(frozen=True)
class Calibration:
    """A fitted score-to-log10-LR model.

    Attributes
    ----------
    intercept, slope : float
        Natural-log odds = ``intercept + slope * score`` with balanced classes.
    lower, upper : float
        Bounds of the log10 LR the fitting data support.
    n_match, n_nonmatch : int
        Known-match and known-non-match scores it was fitted on.
    source : dict
        Where the scores came from (data set, date, software version, parameters).
    match_scores, nonmatch_scores : tuple of float
        The fitting scores themselves, kept so a report can show where a new score sits
        among them; empty for models saved before they were kept.
    """

    intercept: float
    slope: float
    lower: float
    upper: float
    n_match: int
    n_nonmatch: int
    model: str = MODEL
    source: dict[str, Any] = field(default_factory=dict)
    match_scores: tuple[float, ...] = ()
    nonmatch_scores: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so models stay hashable-looking and compare equal.
        for name in ("match_scores", "nonmatch_scores"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))

    def log10_lr(self, scores: np.ndarray | float) -> np.ndarray:
        """log10 likelihood ratio of each score (monotone non-decreasing in the score)."""
        scores = np.asarray(scores, dtype=np.float64)
        log10 = (self.intercept + self.slope * scores) / math.log(10.0)
        return np.clip(log10, self.lower, self.upper)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any], source: str | None = None) -> Calibration:
        """Inverse of :meth:`to_dict`; ``source`` names the file for error messages."""
        if value.get("model") != MODEL:
            raise InputError(source, f"unknown calibration model {value.get('model')!r}")
        try:
            return cls(**value)
        except TypeError as exc:
            raise InputError(source, f"calibration file is incomplete: {exc}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically (a crash never leaves half a file)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.to_dict(), handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        """Read a model written by :meth:`save`."""
        try:
            value = json.loads(Path(path).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(path, f"cannot read calibration: {exc}") from None
        if not isinstance(value, dict):
            raise InputError(path, "calibration file is not a JSON object")
        return cls.from_dict(value, os.fspath(path))


def fit_calibration(
    match_scores: np.ndarray,
    nonmatch_scores: np.ndarray,
    *,
    source: dict[str, Any] | None = None,
    ridge: float = 1e-3,
) -> Calibration:
    """Fit a :class:`Calibration` from known-match and known-non-match scores.

    Parameters
    ----------
    match_scores, nonmatch_scores : array_like
        Scores of pairs known to come from the same / different firearms.
    source : dict, optional
        Provenance recorded with the model (data set, parameters, ...).
    ridge : float
        Penalty on the standardised slope; keeps separated data finite.

    Returns
    -------
    Calibration

    Raises
    ------
    InputError
        Fewer than two scores of either kind, non-finite scores, or scores that rank
        non-matches above matches on average (a calibration that would mislead).
    """
    km = np.asarray(match_scores, dtype=np.float64).ravel()
    knm = np.asarray(nonmatch_scores, dtype=np.float64).ravel()
    if km.size < 2 or knm.size < 2:
        raise InputError(None, "calibration needs at least 2 known-match and 2 non-match scores")
    if not (np.all(np.isfinite(km)) and np.all(np.isfinite(knm))):
        raise InputError(None, "calibration scores must be finite")
    if km.mean() <= knm.mean():
        raise InputError(
            None, "known matches do not score higher than non-matches; refusing to calibrate"
        )
    scores = np.concatenate([km, knm])
    labels = np.concatenate([np.ones(km.size), np.zeros(knm.size)])
    weights = np.concatenate([np.full(km.size, 0.5 / km.size), np.full(knm.size, 0.5 / knm.size)])
    centre, scale = scores.mean(), scores.std() or 1.0
    x = (scores - centre) / scale

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] + theta[1] * x
        # log(1 + exp(z)) - y z, written to stay finite for large |z|
        nll = np.logaddexp(0.0, z) - labels * z
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        grad_z = weights * (p - labels)
        value = float(np.sum(weights * nll) + ridge * theta[1] ** 2)
        grad = np.array([grad_z.sum(), float(np.sum(grad_z * x) + 2.0 * ridge * theta[1])])
        return value, grad

    result = minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B")
    a, b = result.x
    slope = b / scale
    intercept = a - slope * centre
    record = {
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(source or {}),
    }
    return Calibration(
        intercept=float(intercept),
        slope=float(slope),
        lower=-math.log10(km.size + 1),
        upper=math.log10(knm.size + 1),
        n_match=int(km.size),
        n_nonmatch=int(knm.size),
        source=record,
        match_scores=tuple(round(float(v), 6) for v in km),
        nonmatch_scores=tuple(round(float(v), 6) for v in knm),
    )


CALIBRATION_FILE = "calibration.json"
"""Name of the calibration file kept beside (inside) a store directory."""


def model_key(region: str, modality: str) -> str:
    """Key of the model for one region and modality, e.g. ``"breech_face/3d"``."""
    return f"{region}/{modality}"


def save_models(path: str | os.PathLike, models: dict[str, Calibration]) -> None:
    """Write models keyed by :func:`model_key` as one JSON file, atomically."""
    document = {
        "format": "ribin-calibration",
        "format_version": 1,
        "models": {key: model.to_dict() for key, model in sorted(models.items())},
    }
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_models(path: str | os.PathLike) -> dict[str, Calibration]:
    """Read a file written by :func:`save_models`."""
    try:
        document = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read calibration: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != "ribin-calibration":
        raise InputError(path, "not a RIBIN calibration file")
    if document.get("format_version") != 1:
        raise InputError(
            path,
            f"written by calibration format {document.get('format_version')}, "
            "this RIBIN reads format 1 (upgrade RIBIN)",
        )
    return {
        key: Calibration.from_dict(value, os.fspath(path))
        for key, value in document.get("models", {}).items()
    }


def models_for_store(
    store_path: str | os.PathLike | None,
) -> tuple[dict[str, Calibration], str]:
    """The store's own calibration if it has one, else the default shipped with RIBIN.

    Returns the models and where they came from (a path, ``"<default>"`` or ``"none"``).
    """
    own = Path(store_path) / CALIBRATION_FILE if store_path is not None else None
    if own is not None and own.is_file():
        return load_models(own), str(own)
    from importlib import resources

    default = resources.files("ribin.data").joinpath(CALIBRATION_FILE)
    if default.is_file():
        with resources.as_file(default) as path:
            return load_models(path), "<default>"
    return {}, "none"
