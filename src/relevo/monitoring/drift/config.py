"""Which test each column gets, with which threshold: `DriftConfig`, per deployment and per
feature (docs/monitoring.md, "Drift", explains the defaults).

The defaults, by column type and by the number of values in the current window:

| column      | under `small_sample` values (1,000)     | from `small_sample` values on         |
|-------------|-----------------------------------------|---------------------------------------|
| numeric     | Kolmogorov-Smirnov, p < 0.05 / k        | normalised Wasserstein >= 0.1         |
| categorical | chi-square, p < 0.05 / k                | Jensen-Shannon distance >= 0.1        |

k is the number of features tested with a p-value in the report (Bonferroni). A categorical
column with fewer than 10 values per category seen keeps the chi-square test, since a
distance between sparse counts is mostly noise. A column with fewer than `min_rows` values in
either window is not evaluable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from relevo.errors import InvalidInputError, Problem
from relevo.monitoring.timespan import parse_duration

NUMERIC_METHODS = ("wasserstein", "psi", "jensenshannon", "ks")
CATEGORICAL_METHODS = ("jensenshannon", "psi", "chisquare")
#: tests whose threshold is a significance level (drift when p < threshold / k)
P_VALUE_METHODS = frozenset({"ks", "chisquare"})
METHODS = ("auto", *sorted(set(NUMERIC_METHODS) | set(CATEGORICAL_METHODS)))

DEFAULT_THRESHOLDS: dict[str, float] = {
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.2,
    "ks": 0.05,
    "chisquare": 0.05,
}
CORRECTIONS = ("bonferroni", "none")
#: data-quality limits (shares of a window's values): missing values above the reference's
#: own share, values outside the reference's range, categories the reference never showed,
#: rows rejected by validation
DEFAULT_QUALITY: dict[str, float] = {
    "missing": 0.05,
    "out_of_range": 0.05,
    "unseen": 0.01,
    "rejected": 0.05,
}
#: values per category under which a categorical column keeps the chi-square test
MIN_PER_CATEGORY = 10


@dataclass(frozen=True)
class ColumnConfig:
    """Settings of one column: `method` ("auto" or a test), `threshold` (None: the method's
    default), `enabled` (False: the column is not tested)."""

    method: str = "auto"
    threshold: float | None = None
    enabled: bool = True


@dataclass(frozen=True)
class DriftConfig:
    """How drift is judged. `DriftConfig.from_dict(d)` reads the "drift" section of a
    deployment's monitoring settings; every key is optional.

    `method` / `threshold`: for every column (per-column settings win); `numeric` /
    `categorical`: the method for that kind of column; `thresholds`: a default per method;
    `small_sample`: below this many current values the p-value tests are used; `min_rows`:
    fewer values in a window and the column is not evaluable; `correction`: "bonferroni" or
    "none", over the features tested with a p-value; `dataset_share`: dataset drift when at
    least this share of the evaluable features drifted; `features`: per-feature
    `{"method", "threshold", "enabled"}`; `prediction` / `multivariate`: the same for the
    model's output and the reconstruction error. For alerts: `window`, the span each
    evaluation judges ("1h"), and `quality`, the data-quality limits (`DEFAULT_QUALITY`).
    """

    method: str = "auto"
    numeric: str = "auto"
    categorical: str = "auto"
    threshold: float | None = None
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    small_sample: int = 1000
    min_rows: int = 100
    correction: str = "bonferroni"
    dataset_share: float = 0.5
    features: Mapping[str, ColumnConfig] = field(default_factory=dict)
    prediction: ColumnConfig = ColumnConfig()
    multivariate: ColumnConfig = ColumnConfig()
    window: str = "1h"
    quality: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_QUALITY))

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        try:
            parse_duration(self.window, "window")
        except InvalidInputError as exc:
            problems += [Problem(p.message, column="window") for p in exc.problems]
        quality = {**DEFAULT_QUALITY, **dict(self.quality)}
        for name, value in quality.items():
            where = f"quality.{name}"
            if name not in DEFAULT_QUALITY:
                problems.append(
                    Problem(f"unknown limit; known: {sorted(DEFAULT_QUALITY)}", column=where)
                )
            elif _check_positive(value, where, problems) and value > 1:
                problems.append(Problem("a share: at most 1", column=where))
        for name in ("method", "numeric", "categorical"):
            _check_method(getattr(self, name), name, problems)
        kinds = {"numeric": NUMERIC_METHODS, "categorical": CATEGORICAL_METHODS}
        for name, allowed in kinds.items():
            value = getattr(self, name)
            if value != "auto" and value in METHODS and value not in allowed:
                problems.append(Problem(f"{value!r} does not test {name} columns", column=name))
        merged = {**DEFAULT_THRESHOLDS, **dict(self.thresholds)}
        for method, value in merged.items():
            if method not in DEFAULT_THRESHOLDS:
                problems.append(
                    Problem(
                        f"unknown method; known: {sorted(DEFAULT_THRESHOLDS)}",
                        column=f"thresholds.{method}",
                    )
                )
            else:
                _check_threshold(value, f"thresholds.{method}", method, problems)
        if self.threshold is not None and self.method != "auto":
            _check_threshold(self.threshold, "threshold", self.method, problems)
        elif self.threshold is not None:
            _check_positive(self.threshold, "threshold", problems)
        for name in ("small_sample", "min_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(Problem("must be a whole number >= 1", column=name))
        if self.correction not in CORRECTIONS:
            problems.append(Problem(f"must be one of {list(CORRECTIONS)}", column="correction"))
        share = self.dataset_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            problems.append(Problem("must be a number in (0, 1]", column="dataset_share"))
        columns = {f"features.{k}": v for k, v in self.features.items()}
        columns |= {"prediction": self.prediction, "multivariate": self.multivariate}
        for where, col in columns.items():
            _check_method(col.method, f"{where}.method", problems)
            if col.threshold is not None:
                if col.method == "auto":
                    _check_positive(col.threshold, f"{where}.threshold", problems)
                else:
                    _check_threshold(col.threshold, f"{where}.threshold", col.method, problems)
            if not isinstance(col.enabled, bool):
                problems.append(Problem("must be true or false", column=f"{where}.enabled"))
        if problems:
            raise InvalidInputError("invalid drift settings", problems)
        object.__setattr__(self, "thresholds", merged)
        object.__setattr__(self, "quality", quality)
        object.__setattr__(self, "features", dict(self.features))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DriftConfig:
        """Settings from plain data (JSON), naming any unknown or invalid key."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidInputError(
                "invalid drift settings", [Problem("must be an object", column="drift")]
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(
                "invalid drift settings",
                [Problem(f"unknown setting; known: {sorted(known)}", column=k) for k in unknown],
            )
        values: dict[str, Any] = dict(data)
        for name in ("thresholds", "quality"):
            if name in values:
                if not isinstance(values[name], Mapping):
                    raise InvalidInputError(
                        "invalid drift settings", [Problem("must be an object", column=name)]
                    )
                values[name] = dict(values[name])
        features = values.get("features", {})
        if not isinstance(features, Mapping):
            raise InvalidInputError(
                "invalid drift settings", [Problem("must be an object", column="features")]
            )
        values["features"] = {str(k): _column(v, f"features.{k}") for k, v in features.items()}
        for name in ("prediction", "multivariate"):
            if name in values:
                values[name] = _column(values[name], name)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "threshold": self.threshold,
            "thresholds": dict(self.thresholds),
            "small_sample": self.small_sample,
            "min_rows": self.min_rows,
            "correction": self.correction,
            "dataset_share": self.dataset_share,
            "features": {k: _column_dict(v) for k, v in self.features.items()},
            "prediction": _column_dict(self.prediction),
            "multivariate": _column_dict(self.multivariate),
            "window": self.window,
            "quality": dict(self.quality),
        }

    def column(self, name: str) -> ColumnConfig:
        return self.features.get(name, ColumnConfig())

    def choose(
        self,
        settings: ColumnConfig,
        kind: str,
        n_current: int,
        n_categories: int = 0,
        key: str | None = None,
    ) -> tuple[str, float]:
        """(method, threshold) for a column of `kind` ("numeric" / "categorical") with
        `n_current` values in the current window (and `n_categories` categories seen);
        `key`: where `settings` are (`features.age`), named when the method does not fit."""
        allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
        method = settings.method
        if method != "auto" and method not in allowed:
            message = (
                f"the drift method {method!r} does not test {kind} columns; use one of "
                f"{list(allowed)}"
            )
            if key is None:
                raise InvalidInputError(message)
            raise InvalidInputError(
                "invalid drift settings", [Problem(message, column=f"{key}.method")]
            )
        for fallback in (self.method, self.numeric if kind == "numeric" else self.categorical):
            if method == "auto" and fallback in allowed:
                method = fallback
        if method == "auto":
            sparse = kind == "categorical" and n_current < MIN_PER_CATEGORY * n_categories
            if n_current < self.small_sample or sparse:
                method = "ks" if kind == "numeric" else "chisquare"
            else:
                method = "wasserstein" if kind == "numeric" else "jensenshannon"
        threshold = settings.threshold
        if threshold is None and self.method == method:
            threshold = self.threshold
        return method, float(self.thresholds[method] if threshold is None else threshold)


def _column(data: Any, where: str) -> ColumnConfig:
    if not isinstance(data, Mapping):
        raise InvalidInputError(
            "invalid drift settings", [Problem("must be an object", column=where)]
        )
    known = {f.name for f in fields(ColumnConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInputError(
            "invalid drift settings",
            [
                Problem(f"unknown setting; known: {sorted(known)}", column=f"{where}.{k}")
                for k in unknown
            ],
        )
    return ColumnConfig(**dict(data))


def _column_dict(col: ColumnConfig) -> dict[str, Any]:
    return {"method": col.method, "threshold": col.threshold, "enabled": col.enabled}


def _check_method(value: Any, where: str, problems: list[Problem]) -> None:
    if value not in METHODS:
        problems.append(Problem(f"must be one of {list(METHODS)}", column=where))


def _check_positive(value: Any, where: str, problems: list[Problem]) -> bool:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )
    if not ok:
        problems.append(Problem("must be a positive number", column=where))
    return ok


def _check_threshold(value: Any, where: str, method: str, problems: list[Problem]) -> None:
    if not _check_positive(value, where, problems):
        return
    if method in P_VALUE_METHODS and value >= 1:
        problems.append(Problem("a significance level must be under 1", column=where))
