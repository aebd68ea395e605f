"""A model version's reference profile: its training inputs and its own predictions on them.

Production windows are later profiled on the same bins and categories (`empty_like().update`),
so comparing production with the reference is arithmetic on small, mergeable values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from relevo.monitoring.multivariate import Reconstruction
from relevo.monitoring.numeric import BINS
from relevo.monitoring.profile import CategoricalProfile, DatasetProfile, NumericProfile
from relevo.registry.flavors.base import RawOutput
from relevo.registry.signature import Signature
from relevo.serving.outputs import scores

if TYPE_CHECKING:
    from relevo.monitoring.layout import Layout

PREDICTION = "prediction"


@dataclass(frozen=True)
class ReferenceProfile:
    inputs: DatasetProfile
    #: one column, "prediction": P(positive class), the regression value or the predicted label
    prediction: DatasetProfile
    #: the PCA reconstruction of the inputs and the reference's own errors (multivariate
    #: drift); None for references registered before it, or with under two input columns
    multivariate: Reconstruction | None = None

    @cached_property
    def layout(self) -> Layout:
        """The bins and categories production buckets of this model are profiled on."""
        from relevo.monitoring.layout import ERROR, Layout, PartLayout

        mv = None
        if self.multivariate is not None:
            mv = PartLayout.of(DatasetProfile(0, {ERROR: self.multivariate.errors_profile}))
        return Layout(PartLayout.of(self.inputs), PartLayout.of(self.prediction), mv)

    @classmethod
    def build(
        cls,
        frame: pd.DataFrame,
        signature: Signature,
        task: str,
        classes: list[Any] | None,
        raw: RawOutput,
    ) -> ReferenceProfile:
        inputs = DatasetProfile.reference(frame[signature.names], signature.kinds, bins=BINS)
        score = scores(task, classes, raw)
        kind = "string" if task == "multiclass" else "number"
        prediction = DatasetProfile.reference(
            pd.DataFrame({PREDICTION: score}), {PREDICTION: kind}, bins=BINS
        )
        multivariate = Reconstruction.fit(frame[signature.names], signature.kinds, bins=BINS)
        return cls(inputs, prediction, multivariate)

    def to_dict(self) -> dict[str, Any]:
        out = {"inputs": self.inputs.to_dict(), "prediction": self.prediction.to_dict()}
        if self.multivariate is not None:
            out["multivariate"] = self.multivariate.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        mv = data.get("multivariate")
        return cls(
            DatasetProfile.from_dict(data["inputs"]),
            DatasetProfile.from_dict(data["prediction"]),
            Reconstruction.from_dict(mv) if mv is not None else None,
        )

    def summary(self) -> list[dict[str, Any]]:
        """One line per column (inputs, then the prediction) for people to read."""
        rows = []
        for name, prof in [*self.inputs.columns.items(), *self.prediction.columns.items()]:
            rows.append(describe(name, prof))
        return rows


def describe(name: str, prof: NumericProfile | CategoricalProfile) -> dict[str, Any]:
    total = (
        prof.count + prof.missing
        if isinstance(prof, NumericProfile)
        else (sum(prof.counts.values()) + prof.missing)
    )
    missing_share = prof.missing / total if total else 0.0
    if isinstance(prof, NumericProfile):
        return {
            "column": name,
            "type": "numeric",
            "count": prof.count,
            "missing_share": missing_share,
            "mean": _finite(prof.mean),
            "std": _finite(prof.std),
            "min": _finite(prof.min),
            "max": _finite(prof.max),
            "bins": max(len(prof.counts), 1),
        }
    top = sorted(prof.counts.items(), key=lambda kv: -kv[1])[:3]
    count = sum(prof.counts.values())
    return {
        "column": name,
        "type": "categorical",
        "count": count,
        "missing_share": missing_share,
        "categories": len(prof.counts),
        "top": [{"value": k, "share": v / count if count else 0.0} for k, v in top],
    }


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
