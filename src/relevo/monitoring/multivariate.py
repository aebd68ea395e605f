"""Multivariate drift: the reconstruction error of a PCA fitted on the reference inputs.

NannyML's data-reconstruction approach: standardise the numeric inputs (missing values imputed
with the reference mean) and the one-hot encoded most frequent categories, fit a PCA keeping
the components that explain ~65 % of the variance, and measure per row the Euclidean distance
between the standardised row and its reconstruction from those components. A change in the
relations between features (a correlation that breaks) raises the error even when no single
feature's distribution moves. The reference's own errors are profiled at registration; each
production bucket profiles the errors of its rows, so multivariate drift is a numeric drift
test of the error like any other.

Fitting uses scikit-learn's PCA; the fitted means, scales and components are stored as lists
and production errors are computed with NumPy alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from relevo.monitoring.numeric import NumericProfile
from relevo.monitoring.profile import CATEGORICAL_KINDS, NUMERIC_KINDS

#: the share of the standardised inputs' variance the kept components explain
VARIANCE = 0.65
#: one-hot columns per categorical feature (its most frequent categories)
TOP_CATEGORIES = 10
#: reference rows the PCA is fitted on at most (a uniform sample above)
FIT_ROWS = 50_000


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """A fitted PCA reconstruction and the reference's own error profile."""

    numeric: tuple[str, ...]
    #: per categorical column, the categories that get a one-hot column
    categorical: tuple[tuple[str, tuple[str, ...]], ...]
    #: of the raw design columns (numeric, then one-hot): for standardising
    mean: np.ndarray
    scale: np.ndarray
    #: kept principal axes, components x design columns (of the standardised data)
    components: np.ndarray
    #: share of variance the kept components explain on the reference
    explained: float
    #: the reference rows' reconstruction errors
    errors_profile: NumericProfile

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        kinds: Mapping[str, str],
        *,
        bins: int = 10,
        variance: float = VARIANCE,
        seed: int = 0,
    ) -> Reconstruction | None:
        """Fit on reference inputs; None when there is too little to reconstruct (fewer
        than two design columns or three rows)."""
        from sklearn.decomposition import PCA

        numeric = tuple(c for c, k in kinds.items() if k in NUMERIC_KINDS)
        categorical = []
        for c, k in kinds.items():
            if k in CATEGORICAL_KINDS:
                counts = frame[c].dropna().map(str).value_counts()
                top = tuple(str(v) for v in counts.index[:TOP_CATEGORIES] if counts[v] > 0)
                if len(top) > 1:
                    categorical.append((c, top))
        raw = _design(frame, numeric, tuple(categorical))
        if raw.shape[1] < 2 or raw.shape[0] < 3:
            return None
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(raw, axis=0)
            scale = np.nanstd(raw, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        z = _standardise(raw, mean, scale)
        fit_rows = z
        if z.shape[0] > FIT_ROWS:
            rng = np.random.default_rng(seed)
            fit_rows = z[rng.choice(z.shape[0], FIT_ROWS, replace=False)]
        pca = PCA(n_components=variance, svd_solver="full").fit(fit_rows)
        components = np.asarray(pca.components_, dtype=np.float64)
        explained = float(np.sum(pca.explained_variance_ratio_))
        errors = _errors(z, components)
        profile = NumericProfile.reference(errors, bins=bins, seed=seed)
        return cls(numeric, tuple(categorical), mean, scale, components, explained, profile)

    def errors(self, frame: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """Each row's reconstruction error (columns absent from `frame` count as missing)."""
        raw = _design(frame, self.numeric, self.categorical)
        return _errors(_standardise(raw, self.mean, self.scale), self.components)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categorical": [[c, list(cats)] for c, cats in self.categorical],
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "components": self.components.tolist(),
            "explained": self.explained,
            "errors": self.errors_profile.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reconstruction:
        width = len(d["mean"])
        return cls(
            tuple(d["numeric"]),
            tuple((str(c), tuple(cats)) for c, cats in d["categorical"]),
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["scale"], dtype=np.float64),
            np.asarray(d["components"], dtype=np.float64).reshape(-1, width),
            float(d["explained"]),
            NumericProfile.from_dict(d["errors"]),
        )


def _design(
    frame: pd.DataFrame | Mapping[str, Any],
    numeric: tuple[str, ...],
    categorical: tuple[tuple[str, tuple[str, ...]], ...],
) -> np.ndarray:
    """Numeric columns as floats (NaN when missing), then one 0/1 column per top category."""
    if not isinstance(frame, pd.DataFrame):
        if all(_floats(frame.get(c)) for c in numeric):
            return _design_arrays(frame, numeric, categorical)
        frame = pd.DataFrame(dict(frame))
    n = len(frame)
    width = len(numeric) + sum(len(cats) for _, cats in categorical)
    out = np.empty((n, width), dtype=np.float64)
    present = [c for c in numeric if c in frame.columns]
    try:  # one conversion for all numeric columns (None -> NaN)
        block = frame[present].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        block = np.column_stack(
            [pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64, na_value=np.nan)
             for c in present]
        ) if present else np.empty((n, 0))  # fmt: skip
    if len(present) == len(numeric):
        out[:, : len(numeric)] = block
    else:
        out[:, : len(numeric)] = np.nan
        for k, c in enumerate(present):
            out[:, numeric.index(c)] = block[:, k]
    _one_hot(out, len(numeric), frame, categorical)
    return out


def _floats(values: Any) -> bool:
    return values is None or (isinstance(values, np.ndarray) and values.dtype == np.float64)


def _design_arrays(
    columns: Mapping[str, Any],
    numeric: tuple[str, ...],
    categorical: tuple[tuple[str, tuple[str, ...]], ...],
) -> np.ndarray:
    """`_design` of columns whose numeric ones are float arrays already (the production
    profiles'): copied into place, without a DataFrame (its construction and the block's
    conversion were most of the cost)."""
    n = len(next(iter(columns.values()))) if columns else 0
    width = len(numeric) + sum(len(cats) for _, cats in categorical)
    out = np.empty((n, width), dtype=np.float64)
    for k, c in enumerate(numeric):
        values = columns.get(c)
        out[:, k] = np.nan if values is None else values
    _one_hot(out, len(numeric), columns, categorical)
    return out


def _one_hot(
    out: np.ndarray,
    start: int,
    columns: pd.DataFrame | Mapping[str, Any],
    categorical: tuple[tuple[str, tuple[str, ...]], ...],
) -> None:
    """One 0/1 column per top category into `out`, from column `start` on (values as text)."""
    j = start
    for c, cats in categorical:
        if c in columns:
            values = pd.Series(columns[c]).map(str, na_action="ignore").to_numpy(dtype=object)
        else:
            values = np.full(len(out), None, dtype=object)
        for cat in cats:
            out[:, j] = values == cat
            j += 1


def _standardise(raw: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (raw - mean) / scale
    z[~np.isfinite(z)] = 0.0  # a missing value is imputed with the reference mean
    return z


def _errors(z: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Euclidean distance of each standardised row to its reconstruction (the standardised
    data is centred on the reference, so the PCA's own centre is ~0 and left out)."""
    rebuilt = (z @ components.T) @ components
    return np.sqrt(np.einsum("ij,ij->i", z - rebuilt, z - rebuilt))
