"""Score calibration: comparison scores to log10 likelihood ratios.

A likelihood ratio says how much more probable a score is if two casings were fired by the
same firearm than if they were not. It supports the examiner's microscope comparison; it is
not a conclusion, and it is only as good as the known-match and known-non-match scores it
was fitted on.

Models are fitted with NFI's ``lir`` library (the field's open-source LR toolkit): a
class-balanced logistic regression, a kernel density ratio or isotonic regression (pool
adjacent violators) of known-match against known-non-match scores. Their output is bounded
by the empirical lower and upper bounds (ELUB, Vergeer et al. 2016) of the fitting data: the
largest log10 LRs those data can support. A fitted model keeps its parameters and fitting
scores, so it evaluates here, in plain NumPy, without ``lir`` or any refitting: search and
ingest never import ``lir`` (its import takes seconds); fitting and validation do.

A model file (:func:`save_models`) is versioned: format 2 holds the method, parameters,
bounds, provenance and validation figures of each model; format 1 files (the logistic models
of RIBIN before lir) are still read.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ribin import __version__
from ribin.errors import InputError

FORMAT_VERSION = 2
"""Version of the calibration file :func:`save_models` writes."""

METHODS = ("logistic", "kde", "isotonic")
"""Score-to-LR methods, all fitted by ``lir``."""

DEFAULT_METHOD = "logistic"
"""Chosen by leave-one-firearm-out Cllr on the Fadul subset and the synthetic set (see
``benchmarks/bench_calibration.py`` and docs/method.md)."""

_LEGACY_MODEL = "balanced-logistic-v1"
_LN10 = math.log(10.0)


@dataclass(frozen=True)
class Calibration:
    """A fitted score-to-log10-LR model of one region and modality.

    Attributes
    ----------
    method : {"logistic", "kde", "isotonic"}
        How scores map to LRs (fitted by ``lir``).
    params : dict
        The fitted parameters, enough to evaluate without ``lir``: ``intercept`` and
        ``slope`` (natural-log LR = intercept + slope * score) for logistic; ``bandwidth``
        (non-match, match) for KDE, whose kernels sit on the fitting scores; ``x`` and
        ``log10_lr`` (the PAV steps, linearly interpolated) for isotonic.
    lower, upper : float
        ELUB bounds of the log10 LR: what the fitting data can support.
    n_match, n_nonmatch : int
        Known-match (same-source) and known-non-match (different-source) pairs.
    name : str
        Short name quoted with every LR this model gives (results, reports).
    region, modality : str
        What it calibrates (``breech_face``/``firing_pin``, ``3d``/``2d``).
    shipped : bool
        True for the default calibration shipped with RIBIN, False for a lab's own.
    source : dict
        Provenance: data set, scanner, software and lir versions, fit date, pairs used.
    validation : dict
        Figures measured on the fitting data (Cllr, Cllr_min, misleading-evidence rates),
        in-sample and, where firearms allowed it, leave-one-firearm-out.
    match_scores, nonmatch_scores : tuple of float
        The fitting scores themselves (the KDE's kernels; a report shows where a new score
        sits among them).
    """

    method: str
    params: dict[str, Any]
    lower: float
    upper: float
    n_match: int
    n_nonmatch: int
    name: str = ""
    region: str = ""
    modality: str = ""
    shipped: bool = False
    source: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    match_scores: tuple[float, ...] = ()
    nonmatch_scores: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so models compare equal after a round trip.
        for name in ("match_scores", "nonmatch_scores"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if self.method not in METHODS:
            raise InputError(None, f"unknown calibration method {self.method!r}")

    @property
    def model(self) -> str:
        """The method as reports name it, e.g. ``"lir logistic"``."""
        return f"lir {self.method}"

    @property
    def is_default(self) -> bool:
        """True for RIBIN's shipped calibration: not the lab's own scanner and test fires."""
        return self.shipped

    def log10_lr(self, scores: np.ndarray | float) -> np.ndarray:
        """log10 likelihood ratio of each score, within the ELUB bounds."""
        x = np.asarray(scores, dtype=np.float64)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            raw = _evaluate(self, x)
        raw = np.where(np.isnan(raw), 0.0, raw)
        return np.clip(raw, self.lower, self.upper)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any], source: str | None = None) -> Calibration:
        """Inverse of :meth:`to_dict`; ``source`` names the file for error messages."""
        if not isinstance(value, dict):
            raise InputError(source, "calibration model is not a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            model = cls(**{k: v for k, v in value.items() if k in known})
        except TypeError as exc:
            raise InputError(source, f"calibration model is incomplete: {exc}") from None
        except InputError as exc:
            raise InputError(source, exc.problem) from None
        _check_params(model, source)
        return model


def _evaluate(model: Calibration, x: np.ndarray) -> np.ndarray:
    p = model.params
    if model.method == "logistic":
        return (float(p["intercept"]) + float(p["slope"]) * x) / _LN10
    if model.method == "isotonic":
        # sklearn interpolates the PAV probabilities linearly (balanced classes), lir turns
        # them into log10 odds: LRs, +-inf beyond every score of the other class
        prob = np.interp(x, np.asarray(p["x"], float), np.asarray(p["p"], float))
        return np.log10(prob) - np.log10(1.0 - prob)
    # KDE: log density ratio of Gaussian kernels on the fitting scores (as sklearn's
    # KernelDensity, which lir fits), evaluated here without it. Scores beyond the fitting
    # range take the value at its end: the ratio of two Gaussian tails of different widths
    # would otherwise turn back towards the other hypothesis far out.
    h0, h1 = (float(b) for b in p["bandwidth"])
    every = model.match_scores + model.nonmatch_scores
    x = np.clip(x, min(every), max(every))
    return (
        _log_kde(x, np.asarray(model.match_scores), h1)
        - _log_kde(x, np.asarray(model.nonmatch_scores), h0)
    ) / _LN10


def _log_kde(x: np.ndarray, centres: np.ndarray, h: float) -> np.ndarray:
    """Natural log of a Gaussian kernel density with bandwidth ``h`` at ``x``."""
    z = (np.atleast_1d(x)[:, None] - centres[None, :]) / h
    log_k = -0.5 * z**2
    top = log_k.max(axis=1, keepdims=True)
    out = top[:, 0] + np.log(np.exp(log_k - top).sum(axis=1))
    out -= math.log(centres.size * h * math.sqrt(2 * math.pi))
    return out.reshape(np.shape(x))


def _check_params(model: Calibration, source: str | None) -> None:
    needed = {"logistic": ("intercept", "slope"), "kde": ("bandwidth",), "isotonic": ("x", "p")}
    missing = [k for k in needed[model.method] if k not in model.params]
    if missing:
        raise InputError(source, f"{model.method} calibration lacks {', '.join(missing)}")
    if model.method == "kde" and not (model.match_scores and model.nonmatch_scores):
        raise InputError(source, "KDE calibration lacks its fitting scores")
    if not model.lower <= 0 <= model.upper:
        raise InputError(source, f"calibration bounds [{model.lower}, {model.upper}] exclude 0")


# --------------------------------------------------------------------------- fitting


def _lir_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lir")
    except PackageNotFoundError:  # pragma: no cover - lir is a dependency
        return "unknown"


def _check_scores(km: np.ndarray, knm: np.ndarray) -> None:
    if km.size < 2 or knm.size < 2:
        raise InputError(None, "calibration needs at least 2 known-match and 2 non-match scores")
    if not (np.all(np.isfinite(km)) and np.all(np.isfinite(knm))):
        raise InputError(None, "calibration scores must be finite")
    if km.mean() <= knm.mean():
        raise InputError(
            None, "known matches do not score higher than non-matches; refusing to calibrate"
        )


def fit_llr(
    match_scores: np.ndarray, nonmatch_scores: np.ndarray, method: str = DEFAULT_METHOD
) -> tuple[dict[str, Any], float, float]:
    """Fit one lir calibrator and its ELUB bounds.

    Parameters
    ----------
    match_scores, nonmatch_scores : array_like
        Scores of same-source and different-source pairs.
    method : {"logistic", "kde", "isotonic"}

    Returns
    -------
    params : dict
        What :class:`Calibration` needs to evaluate the calibrator.
    lower, upper : float
        ELUB bounds (log10) of the calibrator's LRs on the fitting data.
    """
    if method not in METHODS:
        raise InputError(None, f"calibration method must be one of {', '.join(METHODS)}")
    km = np.asarray(match_scores, dtype=np.float64).ravel()
    knm = np.asarray(nonmatch_scores, dtype=np.float64).ravel()
    _check_scores(km, knm)
    x = np.concatenate([km, knm])
    y = np.concatenate([np.ones(km.size, int), np.zeros(knm.size, int)])
    import warnings

    from lir.algorithms.bayeserror import elub

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if method == "logistic":
            from lir.algorithms.logistic_regression import LogitCalibrator

            cal = LogitCalibrator().fit(x, y)
            params = {
                "intercept": float(cal._logit.intercept_[0]),
                "slope": float(cal._logit.coef_[0][0]),
                "regularisation": "sklearn LogisticRegression, class_weight=balanced, C=1",
            }
        elif method == "kde":
            from lir.algorithms.kde import KDECalibrator

            cal = KDECalibrator(bandwidth="silverman").fit(x, y)
            h0, h1 = KDECalibrator.bandwidth_silverman(x, y)
            params = {"bandwidth": [float(h0), float(h1)], "rule": "silverman"}
        else:
            from lir.algorithms.isotonic_regression import IsotonicCalibrator

            cal = IsotonicCalibrator().fit(x, y)
            params = {
                "x": np.asarray(cal._ir._necessary_X_, dtype=np.float64).tolist(),
                "p": np.asarray(cal._ir._necessary_y_, dtype=np.float64).tolist(),
            }
        llrs = np.asarray(cal.transform(x), dtype=np.float64).ravel()
    lower, upper = elub(np.nan_to_num(llrs.copy(), posinf=999.0, neginf=-999.0), y)
    return params, float(lower), float(upper)


def misleading_rates(llr_match: np.ndarray, llr_nonmatch: np.ndarray) -> dict[str, float]:
    """Rates of misleading evidence: RMEP (same source, LR < 1) and RMED (different, LR > 1)."""
    km = np.asarray(llr_match, float)
    knm = np.asarray(llr_nonmatch, float)
    return {
        "rmep": float(np.mean(km < 0)) if km.size else float("nan"),
        "rmed": float(np.mean(knm > 0)) if knm.size else float("nan"),
    }


def performance(llr_match: np.ndarray, llr_nonmatch: np.ndarray) -> dict[str, Any]:
    """Cllr, Cllr_min (lir), misleading-evidence rates and extremes of a set of log10 LRs.

    Parameters
    ----------
    llr_match, llr_nonmatch : array_like
        log10 LRs of same-source and of different-source pairs.

    Returns
    -------
    dict
        ``cllr``, ``cllr_min``, ``cllr_cal``, ``rmep``, ``rmed``, ``n_match``,
        ``n_nonmatch``, ``min_match_llr``, ``max_nonmatch_llr``, ``median_match_llr``,
        ``median_nonmatch_llr``.
    """
    from lir.data.models import LLRData
    from lir.metrics import cllr, cllr_min

    km = np.asarray(llr_match, float).ravel()
    knm = np.asarray(llr_nonmatch, float).ravel()
    data = LLRData(
        features=np.concatenate([km, knm]),
        labels=np.concatenate([np.ones(km.size, int), np.zeros(knm.size, int)]),
    )
    c, c_min = cllr(data), cllr_min(data)
    return {
        "cllr": round(float(c), 4),
        "cllr_min": round(float(c_min), 4),
        "cllr_cal": round(float(c - c_min), 4),
        **{k: round(v, 4) for k, v in misleading_rates(km, knm).items()},
        "n_match": int(km.size),
        "n_nonmatch": int(knm.size),
        "min_match_llr": round(float(km.min()), 3),
        "median_match_llr": round(float(np.median(km)), 3),
        "max_nonmatch_llr": round(float(knm.max()), 3),
        "median_nonmatch_llr": round(float(np.median(knm)), 3),
    }


def fit_calibration(
    match_scores: np.ndarray,
    nonmatch_scores: np.ndarray,
    *,
    method: str = DEFAULT_METHOD,
    name: str = "",
    region: str = "",
    modality: str = "",
    shipped: bool = False,
    source: dict[str, Any] | None = None,
    validation: dict[str, Any] | None = None,
) -> Calibration:
    """Fit a :class:`Calibration` from known-match and known-non-match scores.

    Parameters
    ----------
    match_scores, nonmatch_scores : array_like
        Scores of pairs known to come from the same / different firearms.
    method : {"logistic", "kde", "isotonic"}
        The lir calibrator.
    name, region, modality, shipped
        As the :class:`Calibration` attributes.
    source : dict, optional
        Provenance recorded with the model (data set, scanner, ...); the fit date,
        software and lir versions, method and pair counts are added.
    validation : dict, optional
        Out-of-sample figures (e.g. leave-one-firearm-out) to keep beside the in-sample
        ones this function measures.

    Returns
    -------
    Calibration

    Raises
    ------
    InputError
        Fewer than two scores of either kind, non-finite scores, or scores that rank
        non-matches above matches on average (a calibration that would mislead).
    """
    # Kept at the precision stored, so the saved model is the fitted one exactly.
    km = np.round(np.asarray(match_scores, dtype=np.float64).ravel(), 6)
    knm = np.round(np.asarray(nonmatch_scores, dtype=np.float64).ravel(), 6)
    params, lower, upper = fit_llr(km, knm, method)
    model = Calibration(
        method=method,
        params=params,
        lower=lower,
        upper=upper,
        n_match=int(km.size),
        n_nonmatch=int(knm.size),
        name=name,
        region=region,
        modality=modality,
        shipped=shipped,
        match_scores=tuple(km.tolist()),
        nonmatch_scores=tuple(knm.tolist()),
    )
    record = {
        **(source or {}),
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "software_version": __version__,
        "lir_version": _lir_version(),
        "fit_method": f"lir {method}, ELUB bounds",
        "n_same_source": int(km.size),
        "n_different_source": int(knm.size),
        "region": region,
        "modality": modality,
        "bounds": [round(lower, 3), round(upper, 3)],
    }
    figures = {
        "in_sample": performance(model.log10_lr(km), model.log10_lr(knm)),
        **(validation or {}),
    }
    return _replace(model, source=record, validation=figures)


def _replace(model: Calibration, **changes: Any) -> Calibration:
    from dataclasses import replace

    return replace(model, **changes)


# --------------------------------------------------------------------------- files

CALIBRATION_FILE = "calibration.json"
"""Name of the calibration file kept beside (inside) a store directory."""


def model_key(region: str, modality: str) -> str:
    """Key of the model for one region and modality, e.g. ``"breech_face/3d"``."""
    return f"{region}/{modality}"


def save_models(path: str | os.PathLike, models: dict[str, Calibration]) -> None:
    """Write models keyed by :func:`model_key` as one JSON file, atomically."""
    document = {
        "format": "ribin-calibration",
        "format_version": FORMAT_VERSION,
        "models": {key: model.to_dict() for key, model in sorted(models.items())},
    }
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # not a secret: readable like the store beside it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_models(path: str | os.PathLike) -> dict[str, Calibration]:
    """Read a file written by :func:`save_models` (format 2, or format 1 of older RIBIN)."""
    try:
        document = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read calibration: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != "ribin-calibration":
        raise InputError(path, "not a RIBIN calibration file")
    version = document.get("format_version")
    models = document.get("models", {})
    if not isinstance(models, dict):
        raise InputError(path, "calibration file's models are not a JSON object")
    if version == 1:
        return {key: _from_format_1(key, value, path) for key, value in models.items()}
    if version != FORMAT_VERSION:
        raise InputError(
            path,
            f"written by calibration format {version}, this RIBIN reads formats 1 and "
            f"{FORMAT_VERSION} (upgrade RIBIN)",
        )
    return {key: Calibration.from_dict(value, os.fspath(path)) for key, value in models.items()}


def _from_format_1(key: str, value: Any, path: str | os.PathLike) -> Calibration:
    """A format-1 model (balanced logistic, count bounds) as a :class:`Calibration`."""
    if not isinstance(value, dict) or value.get("model") != _LEGACY_MODEL:
        model = value.get("model") if isinstance(value, dict) else None
        raise InputError(path, f"unknown calibration model {model!r} in format 1")
    try:
        region, modality = key.split("/", 1)
        source = dict(value.get("source") or {})
        source.setdefault("fit_method", f"{_LEGACY_MODEL} (RIBIN format 1, before lir)")
        return Calibration(
            method="logistic",
            params={"intercept": float(value["intercept"]), "slope": float(value["slope"])},
            lower=float(value["lower"]),
            upper=float(value["upper"]),
            n_match=int(value["n_match"]),
            n_nonmatch=int(value["n_nonmatch"]),
            name=str(source.get("data", "format-1 calibration"))[:60],
            region=region,
            modality=modality,
            source=source,
            match_scores=value.get("match_scores", ()),
            nonmatch_scores=value.get("nonmatch_scores", ()),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path, f"format-1 calibration {key!r} is incomplete: {exc}") from None


def models_for_store(
    store_path: str | os.PathLike | None,
) -> tuple[dict[str, Calibration], str]:
    """The store's own calibration if it has one, else the default shipped with RIBIN.

    The default covers only what real scans were available for (3D breech faces, the Fadul
    subset); other regions and modalities have no model and give no LR ("uncalibrated").

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


def describe(model: Calibration | None) -> str:
    """One line naming a model for a result: its name and whether it is the shipped default."""
    if model is None:
        return "uncalibrated"
    kind = "RIBIN default" if model.is_default else "lab calibration"
    return f"{model.name or model.model} ({kind})"
